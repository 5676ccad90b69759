-- rules/tests/smooth_rule.lua — a rule that exercises lua/smooth.lua for smooth.t: node 1's
-- temperature through a 3-sample moving average, a per-sample EMA and a time-constant EMA,
-- and the packet counter as a rate per minute (a counter: a restart is a new baseline).
local smooth = require("smooth")

local P = gw.prefix
local avg = smooth.average{n = 3, key = "avg"}
local ema = smooth.ema{alpha = 0.5, key = "ema"}
local ema_tau = smooth.ema{tau = 10, key = "ema_tau"}
local rate = smooth.rate{per = 60, counter = true, key = "rate"}

local function out(name, v)
    if v ~= nil then
        gw.publish(P .. "/test/" .. name, string.format("%.4f", v))
    end
end

function on_packet(pkt, meta)
    local now = meta.rx_ns / 1e9
    local t = pkt.n1 and pkt.n1.t
    out("avg", avg:add(t))
    out("ema", ema:add(t))
    out("ema_tau", ema_tau:add(t, now))
    out("rate", rate:add(pkt.sts and pkt.sts.rx, now))
end
