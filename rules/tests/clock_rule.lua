-- rules/tests/clock_rule.lua — a rule for virtual-time.t: it publishes what it sees of the
-- clock (meta.rx_ns, gw.now_ns(), gw.iso8601() without an argument, on_tick's now), so the
-- test can assert that all of them are the test's virtual time; and it fails in on_tick on
-- request, to show how a tick's error is dead-lettered.
local P = gw.prefix

function on_packet(pkt, meta)
    gw.state.fail = pkt.fail -- {"fail":true}: the next on_tick raises an error
    gw.publish(P .. "/clock/packet", string.format("rx_ns=%d now_ns=%d iso=%s", meta.rx_ns,
        gw.now_ns(), gw.iso8601()))
end

function on_line(text, meta)
    gw.publish(P .. "/clock/line", string.format("%s:%d rx_ns=%d", meta.source, meta.line,
        meta.rx_ns))
end

function on_tick(now)
    if gw.state.fail then
        gw.state.fail = nil
        error("tick failed on purpose")
    end
    if gw.state.tick_log then
        gw.publish(P .. "/clock/tick", string.format("%.3f", now))
    end
end

function init()
    gw.state.tick_log = true
end
