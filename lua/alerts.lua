-- lua/alerts.lua — reusable alert helpers for iiotgw rules: a threshold alert with
-- hysteresis and a silence (offline) watchdog, publishing the gateway's alert payload.
--
--   local alerts = require("alerts")
--   local hot = alerts.threshold{topic = gw.prefix .. "/alerts/node1/temperature",
--                                high = 35.0, clear = 33.0, key = "node1_temp",
--                                fields = {node = "node1"}}
--   local dead = alerts.watchdog{topic = gw.prefix .. "/alerts/node1/offline",
--                                after = 120, key = "node1_seen", fields = {node = "node1"}}
--   function on_packet(pkt, meta)
--       local now = meta.rx_ns / 1e9
--       dead:seen(now)
--       hot:update(pkt.n1 and pkt.n1.t, now)
--   end
--   function on_tick(now) dead:check(now) end
--
-- Why: every rule that alerts needs the same few lines (fire once, clear once, remember the
-- state across reloads, a payload the gateway can count); written once here and tested
-- (tests/rules/test_rules_modules.c) they stop being copy-paste.
--
-- Payload (gw.json, keys sorted), retained, QoS 1 by default, published exactly once per
-- transition:
--   {<fields...>,"state":"firing"|"ok","threshold":<number>,"time":"<gw.iso8601(now)>",
--    "value":<number>}
-- A retained payload under <prefix>/alerts/ containing "state":"firing" is what the gateway
-- counts as an active alert (stats field alerts_active), so put alert topics there.
--
-- State: each alert keeps its state in state[key] (a plain table of numbers and booleans),
-- where `state` defaults to gw.state. gw.state is carried over a hot reload, so a reloaded
-- rule neither re-fires nor forgets an alert. Use a distinct key per alert.
--
-- Determinism: no clock is read here; every time is the `now` (seconds, a number) the caller
-- passes — meta.rx_ns / 1e9 in on_packet, the `now` argument of on_tick — so --dry-run over a
-- capture behaves like the live system did. The module defines no globals.
--

local M = {}

local type, pairs, error, floor = type, pairs, error, math.floor
local setmetatable = setmetatable

local RESERVED = {state = true, value = true, threshold = true, time = true}

-- Validate the options shared by both alert kinds; returns the state slot table.
local function common(kind, o)
    if type(o) ~= "table" then
        error("alerts." .. kind .. ": options table expected", 3)
    end
    if type(o.topic) ~= "string" or o.topic == "" then
        error("alerts." .. kind .. ": topic (string) required", 3)
    end
    local key = o.key == nil and o.topic or o.key
    if type(key) ~= "string" or key == "" then
        error("alerts." .. kind .. ": key must be a non-empty string", 3)
    end
    local state = o.state == nil and gw.state or o.state
    if type(state) ~= "table" then
        error("alerts." .. kind .. ": state must be a table (default gw.state)", 3)
    end
    if o.fields ~= nil then
        if type(o.fields) ~= "table" then
            error("alerts." .. kind .. ": fields must be a table", 3)
        end
        for k in pairs(o.fields) do
            if RESERVED[k] then
                error("alerts." .. kind .. ": fields may not set '" .. k .. "'", 3)
            end
        end
    end
    local slot = state[key]
    if slot == nil then
        slot = {}
        state[key] = slot
    elseif type(slot) ~= "table" then
        error("alerts." .. kind .. ": state[" .. key .. "] is in use by something else", 3)
    end
    return slot
end

local function new_alert(kind, o, slot)
    -- Tell front-ends (Home Assistant discovery) about the alert before it first fires.
    local node = o.fields and o.fields.node
    gw.describe_alert(o.topic, {node = type(node) == "string" and node ~= "" and node or nil})
    return {
        topic = o.topic,
        qos = o.qos == nil and 1 or o.qos,
        retain = o.retain == nil and true or o.retain,
        fields = o.fields,
        on_change = o.on_change,
        s = slot,
        kind = kind,
    }
end

-- Publish the payload for a transition and call on_change.
local function emit(a, firing, value, threshold, now)
    local p = {}
    if a.fields then
        for k, v in pairs(a.fields) do
            p[k] = v
        end
    end
    local st = firing and "firing" or "ok"
    p.state, p.value, p.threshold, p.time = st, value, threshold, gw.iso8601(now)
    gw.publish(a.topic, gw.json(p), a.qos, a.retain)
    if a.on_change then
        a.on_change(st, value, now)
    end
    return st
end

local function check_now(kind, now)
    if type(now) ~= "number" then
        error("alerts." .. kind .. ": now (seconds, a number) required", 3)
    end
end

-------------------------------------------------------------------------------------------
-- alerts.threshold{...}
-------------------------------------------------------------------------------------------
-- Options:
--   topic      where to publish (required)
--   high       fire when value >= high            } exactly one of the two
--   low        fire when value <= low             }
--   clear      hysteresis: with high, clear when value < clear (clear <= high);
--              with low, clear when value > clear (clear >= low). Default: high / low.
--   key        state slot name (default: topic); state: table holding it (default gw.state)
--   fields     constant extra payload fields, e.g. {node = "node1"}
--   qos, retain  default 1, true
--   on_change  optional function(state, value, now) called after each publish
-- "threshold" in the payload is high/low when firing and clear when clearing.
local Threshold = {}
Threshold.__index = Threshold

function M.threshold(o)
    local slot = common("threshold", o)
    local a = new_alert("threshold", o, slot)
    if (o.high == nil) == (o.low == nil) then
        error("alerts.threshold: give exactly one of high or low", 2)
    end
    local limit = o.high == nil and o.low or o.high
    if type(limit) ~= "number" then
        error("alerts.threshold: high/low must be a number", 2)
    end
    local clear = o.clear == nil and limit or o.clear
    if type(clear) ~= "number" then
        error("alerts.threshold: clear must be a number", 2)
    end
    a.above = o.high ~= nil
    if a.above and clear > limit then
        error("alerts.threshold: clear must be <= high", 2)
    elseif not a.above and clear < limit then
        error("alerts.threshold: clear must be >= low", 2)
    end
    a.limit, a.clear = limit, clear
    return setmetatable(a, Threshold)
end

-- hot:update(value, now) -> "firing" | "ok" when this call changed the state (and published),
-- nil otherwise. A value that is not a number (missing metric) is ignored.
function Threshold:update(value, now)
    if type(value) ~= "number" then
        return nil
    end
    check_now("threshold", now)
    local s = self.s
    if s.firing then
        if (self.above and value < self.clear) or (not self.above and value > self.clear) then
            s.firing = nil
            return emit(self, false, value, self.clear, now)
        end
    elseif (self.above and value >= self.limit) or (not self.above and value <= self.limit) then
        s.firing = true
        return emit(self, true, value, self.limit, now)
    end
    return nil
end

-- hot:firing() -> true while the alert is firing.
function Threshold:firing()
    return self.s.firing == true
end

-------------------------------------------------------------------------------------------
-- alerts.watchdog{...}
-------------------------------------------------------------------------------------------
-- Options:
--   topic      where to publish (required)
--   after      seconds of silence before firing (required, > 0)
--   key, state, fields, qos, retain, on_change   as for threshold
-- Payload: "value" = whole seconds since the last :seen (math.floor), "threshold" = after.
-- A watchdog that has never seen data does not fire (nothing to be silent about yet).
local Watchdog = {}
Watchdog.__index = Watchdog

function M.watchdog(o)
    local slot = common("watchdog", o)
    local a = new_alert("watchdog", o, slot)
    if type(o.after) ~= "number" or not (o.after > 0) then
        error("alerts.watchdog: after (seconds > 0) required", 2)
    end
    a.after = o.after
    return setmetatable(a, Watchdog)
end

-- dead:seen(now): data arrived. Clears a firing alert (publishes "ok" once), then remembers
-- the time. Returns "ok" when it cleared, else nil.
function Watchdog:seen(now)
    check_now("watchdog", now)
    local s, r = self.s, nil
    if s.firing then
        s.firing = nil
        r = emit(self, false, floor(now - (s.last or now)), self.after, now)
    end
    s.last = now
    return r
end

-- dead:check(now): call from on_tick. Fires once when `after` seconds passed since the last
-- :seen. Returns "firing" when it fired, else nil.
function Watchdog:check(now)
    check_now("watchdog", now)
    local s = self.s
    local last = s.last
    if not s.firing and last and now - last >= self.after then
        s.firing = true
        return emit(self, true, floor(now - last), self.after, now)
    end
    return nil
end

-- dead:firing() -> true while the watchdog is firing; dead:last_seen() -> seconds or nil.
function Watchdog:firing()
    return self.s.firing == true
end

function Watchdog:last_seen()
    return self.s.last
end

return M
