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
-- Tunable thresholds: high, low, clear and after may be a gw.param handle instead of a
-- number; the alert then reads handle[node] (option `node`, for a per-node param) or
-- handle.value at every update, so a value changed on site applies to the next packet:
--   local HIGH = gw.param{name = "temp_high", default = 35.0, nodes = {"node1"}, ...}
--   alerts.threshold{topic = ..., high = HIGH, clear = CLEAR, node = "node1", ...}
--
-- Determinism: no clock is read here; every time is the `now` (seconds, a number) the caller
-- passes — meta.rx_ns / 1e9 in on_packet, the `now` argument of on_tick — so --dry-run over a
-- capture behaves like the live system did. The module defines no globals.
--

local M = {}

local type, pairs, error, floor = type, pairs, error, math.floor
local setmetatable = setmetatable

local RESERVED = {state = true, value = true, threshold = true, time = true}

-- A threshold option: a number, or a gw.param handle read at `key` (o.node, else "value").
-- Returns the handle (or nil) and the key, or the number. Raises when neither.
local function limit_opt(kind, o, name)
    local v = o[name]
    if type(v) == "table" then
        local key = o.node == nil and "value" or o.node
        if type(v[key]) ~= "number" then
            error("alerts." .. kind .. ": " .. name .. " is a param handle without a number at "
                  .. tostring(key) .. " (give node = ... for a per-node param)", 3)
        end
        return v, key
    end
    return nil, v
end

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
--   node       with param handles: the node whose value to read (default: handle.value)
-- high, low and clear may be gw.param handles (see the top of this file).
-- "threshold" in the payload is high/low when firing and clear when clearing.
local Threshold = {}
Threshold.__index = Threshold

function M.threshold(o)
    local slot = common("threshold", o)
    local a = new_alert("threshold", o, slot)
    if (o.high == nil) == (o.low == nil) then
        error("alerts.threshold: give exactly one of high or low", 2)
    end
    a.above = o.high ~= nil
    local lh, limit = limit_opt("threshold", o, a.above and "high" or "low")
    if not lh and type(limit) ~= "number" then
        error("alerts.threshold: high/low must be a number or a gw.param handle", 2)
    end
    local ch, clear
    if o.clear == nil then
        ch, clear = lh, limit
    else
        ch, clear = limit_opt("threshold", o, "clear")
    end
    if not ch and type(clear) ~= "number" then
        error("alerts.threshold: clear must be a number or a gw.param handle", 2)
    end
    -- Constant limits are checked here; params declare their own constraint (below/above).
    if not lh and not ch then
        if a.above and clear > limit then
            error("alerts.threshold: clear must be <= high", 2)
        elseif not a.above and clear < limit then
            error("alerts.threshold: clear must be >= low", 2)
        end
    end
    a.limit, a.clear = limit, clear
    a.lh, a.ch = lh, ch
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
        local clear = self.ch and self.ch[self.clear] or self.clear
        if (self.above and value < clear) or (not self.above and value > clear) then
            s.firing = nil
            return emit(self, false, value, clear, now)
        end
    else
        local limit = self.lh and self.lh[self.limit] or self.limit
        if (self.above and value >= limit) or (not self.above and value <= limit) then
            s.firing = true
            return emit(self, true, value, limit, now)
        end
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
--   after      seconds of silence before firing (required, > 0; or a gw.param handle)
--   key, state, fields, qos, retain, on_change, node   as for threshold
-- Payload: "value" = whole seconds since the last :seen (math.floor), "threshold" = after.
-- A watchdog that has never seen data does not fire (nothing to be silent about yet).
local Watchdog = {}
Watchdog.__index = Watchdog

function M.watchdog(o)
    local slot = common("watchdog", o)
    local a = new_alert("watchdog", o, slot)
    local ah, after = limit_opt("watchdog", o, "after")
    if not ah and (type(after) ~= "number" or not (after > 0)) then
        error("alerts.watchdog: after (seconds > 0) required", 2)
    end
    a.after, a.ah = after, ah
    return setmetatable(a, Watchdog)
end

-- dead:seen(now): data arrived. Clears a firing alert (publishes "ok" once), then remembers
-- the time. Returns "ok" when it cleared, else nil.
function Watchdog:seen(now)
    check_now("watchdog", now)
    local s, r = self.s, nil
    if s.firing then
        s.firing = nil
        r = emit(self, false, floor(now - (s.last or now)), self.ah and self.ah[self.after] or self.after, now)
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
    local after = self.ah and self.ah[self.after] or self.after
    if not s.firing and last and now - last >= after then
        s.firing = true
        return emit(self, true, floor(now - last), after, now)
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
