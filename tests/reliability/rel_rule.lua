-- tests/reliability/rel_rule.lua — the tiny rule the reliability tests run.
--
-- Per packet (its "ts" is the test's unique packet id):
--   <prefix>/rel/a   "<id> <rx_ns>"   QoS 1, retained   (rx_ns = the gateway's receive time,
--                                                        the default InfluxDB timestamp, so the
--                                                        tests know each point's original time)
--   <prefix>/rel/b   "<id>"           QoS 1, not retained
--   rel,p=<prefix> id=<id>i <rx_ns>   one InfluxDB point, stamped with the receive time
-- Two publishes and one point keep the subscriber and the server cheap at 100+ packets/s,
-- and the tag p keeps series of different test runs apart on a shared server.
--
local P = gw.prefix
local TA, TB = P .. "/rel/a", P .. "/rel/b"
local TAGS = {p = P}

function on_packet(pkt, meta)
    local id = pkt.ts
    gw.publish(TA, id .. " " .. meta.rx_ns, 1, true)
    gw.publish(TB, id, 1, false)
    gw.point("rel", TAGS, {id = gw.int(id)})
end
