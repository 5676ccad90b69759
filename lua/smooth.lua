-- lua/smooth.lua — smoothing helpers for iiotgw rules: moving average over the last n
-- samples, exponential moving average (per sample or time-constant based) and rate of change.
--
--   local smooth = require("smooth")
--   local avg = smooth.average{n = 30}                       -- last 30 samples
--   local ema = smooth.ema{alpha = 0.2, key = "t1_ema"}       -- state kept in gw.state.t1_ema
--   local rate = smooth.rate{per = 60, counter = true, key = "rx_rate"}  -- per minute
--   function on_packet(pkt, meta)
--       local now = meta.rx_ns / 1e9
--       local t = pkt.n1 and pkt.n1.t
--       if type(t) == "number" then
--           gw.publish(gw.prefix .. "/node1/temperature_avg", avg:add(t), 1, true)
--           gw.publish(gw.prefix .. "/node1/temperature_ema", ema:add(t), 1, true)
--       end
--       local r = rate:add(pkt.sts and pkt.sts.rx, now)      -- nil on the first sample
--       if r then gw.publish(gw.prefix .. "/stats/packets_per_minute", r) end
--   end
--
-- Why: smoothing a noisy sensor or turning a counter into a rate is the next thing a rule
-- author writes after the metrics; these are small, tested and keep their state in a plain
-- table so it can live in gw.state.
--
-- State: without `key` an object keeps its state privately (lost on a hot reload, which is
-- fine for a short window). With `key` the state lives in state[key], `state` defaulting to
-- gw.state, so it survives a reload. Use a distinct key per object.
--
-- Every `add` ignores a value that is not a number (a missing metric) and returns the current
-- result unchanged. Results are floats. No clock is read: times are the caller's `now`
-- (seconds), so results are deterministic. The module defines no globals.
--

local M = {}

local type, error, exp, setmetatable = type, error, math.exp, setmetatable

-- The table holding an object's state: state[key] (created), or a private table.
local function slot_of(kind, o)
    if o.key == nil then
        if o.state ~= nil then
            error("smooth." .. kind .. ": state needs a key", 3)
        end
        return {}
    end
    if type(o.key) ~= "string" or o.key == "" then
        error("smooth." .. kind .. ": key must be a non-empty string", 3)
    end
    local state = o.state == nil and gw.state or o.state
    if type(state) ~= "table" then
        error("smooth." .. kind .. ": state must be a table (default gw.state)", 3)
    end
    local s = state[o.key]
    if s == nil then
        s = {}
        state[o.key] = s
    elseif type(s) ~= "table" then
        error("smooth." .. kind .. ": state[" .. o.key .. "] is in use by something else", 3)
    end
    return s
end

local function opts(kind, o)
    if type(o) ~= "table" then
        error("smooth." .. kind .. ": options table expected", 3)
    end
    return o
end

-------------------------------------------------------------------------------------------
-- smooth.average{n = N [, key =, state =]}: arithmetic mean of the last N samples
-------------------------------------------------------------------------------------------
local Average = {}
Average.__index = Average

function M.average(o)
    opts("average", o)
    local n = o.n
    if math.type(n) ~= "integer" or n < 1 or n > 100000 then
        error("smooth.average: n must be an integer 1..100000", 2)
    end
    local s = slot_of("average", o)
    if s.n ~= n then -- new, or the window size changed across a reload: start over
        s.n, s.buf, s.pos, s.count, s.sum = n, {}, 0, 0, 0.0
    end
    return setmetatable({s = s}, Average)
end

-- avg:add(x) -> mean of the last n samples including x (nil before the first sample).
function Average:add(x)
    local s = self.s
    if type(x) ~= "number" then
        return self:value()
    end
    local pos = s.pos % s.n + 1
    local old = s.buf[pos]
    s.buf[pos], s.pos = x, pos
    if s.count < s.n then
        s.count = s.count + 1
        s.sum = s.sum + x
    else
        s.sum = s.sum + x - old
    end
    -- Re-sum once per window so rounding errors of the running sum cannot accumulate.
    if pos == s.n then
        local t = 0.0
        for i = 1, s.count do
            t = t + s.buf[i]
        end
        s.sum = t
    end
    return s.sum / s.count
end

-- avg:value() -> current mean or nil; avg:count() -> samples in the window (<= n).
function Average:value()
    local s = self.s
    if s.count == 0 then
        return nil
    end
    return s.sum / s.count
end

function Average:count()
    return self.s.count
end

-------------------------------------------------------------------------------------------
-- smooth.ema{alpha = a | tau = seconds [, key =, state =]}: exponential moving average
-------------------------------------------------------------------------------------------
-- alpha (0 < alpha <= 1): per sample, ema = ema + alpha * (x - ema).
-- tau (seconds > 0): time-aware, for irregular samples: alpha = 1 - exp(-dt / tau) where dt is
-- the time since the previous sample; :add(x, now) then needs now.
-- The first sample initialises the average.
local Ema = {}
Ema.__index = Ema

function M.ema(o)
    opts("ema", o)
    if (o.alpha == nil) == (o.tau == nil) then
        error("smooth.ema: give exactly one of alpha or tau", 2)
    end
    if o.alpha ~= nil and (type(o.alpha) ~= "number" or not (o.alpha > 0 and o.alpha <= 1)) then
        error("smooth.ema: alpha must be a number in (0, 1]", 2)
    end
    if o.tau ~= nil and (type(o.tau) ~= "number" or not (o.tau > 0)) then
        error("smooth.ema: tau must be a number of seconds > 0", 2)
    end
    return setmetatable({s = slot_of("ema", o), alpha = o.alpha, tau = o.tau}, Ema)
end

-- ema:add(x [, now]) -> the updated average (nil before the first sample).
function Ema:add(x, now)
    local s = self.s
    if type(x) ~= "number" then
        return s.value
    end
    local alpha = self.alpha
    if self.tau then
        if type(now) ~= "number" then
            error("smooth.ema: now (seconds) required with tau", 2)
        end
        local dt = s.t and now - s.t or 0
        s.t = now
        alpha = dt > 0 and 1 - exp(-dt / self.tau) or 0
    end
    if s.value == nil then
        s.value = x + 0.0
    else
        s.value = s.value + alpha * (x - s.value)
    end
    return s.value
end

-- ema:value() -> current average or nil.
function Ema:value()
    return self.s.value
end

-------------------------------------------------------------------------------------------
-- smooth.rate{[per = seconds] [, counter = true] [, key =, state =]}: rate of change
-------------------------------------------------------------------------------------------
-- :add(x, now) -> (x - previous x) / (now - previous now) * per, or nil on the first sample
-- and when time did not advance. per defaults to 1 (per second); 60 gives per minute.
-- counter = true: x is a counter since boot, so a decrease means the device restarted; that
-- sample returns nil and becomes the new baseline instead of a large negative rate.
local Rate = {}
Rate.__index = Rate

function M.rate(o)
    opts("rate", o)
    local per = o.per == nil and 1 or o.per
    if type(per) ~= "number" or not (per > 0) then
        error("smooth.rate: per must be a number of seconds > 0", 2)
    end
    return setmetatable({s = slot_of("rate", o), per = per, counter = o.counter == true}, Rate)
end

function Rate:add(x, now)
    if type(x) ~= "number" then
        return nil
    end
    if type(now) ~= "number" then
        error("smooth.rate: now (seconds) required", 2)
    end
    local s = self.s
    local px, pt = s.x, s.t
    if px ~= nil and now <= pt then
        return nil -- time did not advance: keep the older baseline
    end
    s.x, s.t = x, now
    if px == nil or (self.counter and x < px) then
        return nil
    end
    local r = (x - px) / (now - pt) * self.per
    s.value = r
    return r
end

-- rate:value() -> the last rate returned, or nil.
function Rate:value()
    return self.s.value
end

return M
