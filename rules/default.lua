-- rules/default.lua — the stock iiotgw rule: the project's MQTT topics and InfluxDB schema,
-- plus temperature and offline alerts.
--
-- Per telemetry packet it publishes (QoS 1) and writes, in this order:
--   <prefix>/node1/temperature      27.6   retained   temperature,node=node1,unit=celsius value=27.6
--   <prefix>/node1/humidity         54.1   retained   humidity,node=node1,unit=percent value=54.1
--   <prefix>/node1/gas_resistance   84190  retained   gas_resistance,node=node1,unit=ohms value=84190
--   <prefix>/node2/temperature      26.8   retained   temperature,node=node2,unit=celsius value=26.8
--   <prefix>/node2/humidity         48.8   retained   humidity,node=node2,unit=percent value=48.8
--   <prefix>/signal/rssi            -39               rssi,node=signal,unit=dbm value=-39
--   <prefix>/signal/snr             13                snr,node=signal,unit=db value=13
--   <prefix>/stats/packets_received 1                 packets_received,node=stats value=1
--   <prefix>/stats/crc_errors       0                 crc_errors,node=stats value=0
-- A metric missing from the packet (node2's keys are omitted when its sensor read failed) is
-- skipped; integers stay integers on MQTT ("84190"), floats stay floats ("24.0"); InfluxDB
-- always gets the float field `value`. Points are stamped with the packet's receive time.
--
-- Alerts (retained, QoS 1, JSON payload, keys sorted):
--   <prefix>/alerts/<node>/temperature  fires when a node's temperature >= temp_high[node],
--       clears ("state":"ok", published once) when it drops below temp_clear[node].
--   <prefix>/alerts/<node>/offline      fires when no packet carried the node's data for
--       offline_after[node] seconds (checked in on_tick), clears when data returns.
-- The three thresholds are tunable parameters (gw.param, docs/tuning.md), one value per node:
-- a technician changes them over MQTT, `iiotgw param set` or the params file, and the next
-- packet uses the new value. temp_clear must stay below temp_high (declared, enforced).
--   Payload: {"node":"node1","state":"firing"|"ok","threshold":35.0,"time":"<ISO-8601 UTC>",
--             "value":<temperature °C | seconds without data>}
--   "time" is ISO-8601 UTC with whole seconds (gw.iso8601) of the packet (temperature) or of
--   the tick (offline) that changed the state.
-- Node liveness: every packet is printed by node 2, so any packet marks node2 seen; node1 is
-- seen when the packet carries its "n1" object.
--
-- Alert state and last-seen times live in gw.state, so they survive a hot reload.
-- Hot path: the metric map, topics and functions are built once at load time, never per
-- packet; the nine metrics cost one C call (gw.mapper), only the alerts run as Lua.
--

-------------------------------------------------------------------------------------------
-- Thresholds: defaults here, tuned on site without editing this file (docs/tuning.md)
-------------------------------------------------------------------------------------------
local DEFAULTS = {
    temp_high = 35.0,     -- °C: a node's temperature at or above this fires the alert
    temp_clear = 33.0,    -- °C: the alert clears when the temperature drops below this
    offline_after = 120,  -- s: no data from a node for this long fires the offline alert
}
local NODES = {"node1", "node2"}

-- Each handle holds the applied value per node (TEMP_HIGH.node1); the gateway updates it in
-- place when a technician changes it, so reading it costs one table lookup.
local TEMP_HIGH = gw.param{
    name = "temp_high", default = DEFAULTS.temp_high, min = -40, max = 125, step = 0.5,
    unit = "°C", nodes = NODES,
    description = "Temperature at or above which the node's temperature alert fires",
}
local TEMP_CLEAR = gw.param{
    name = "temp_clear", default = DEFAULTS.temp_clear, min = -40, max = 125, step = 0.5,
    unit = "°C", nodes = NODES, below = "temp_high",
    description = "Temperature below which a firing temperature alert clears",
}
local OFFLINE_AFTER = gw.param{
    name = "offline_after", type = "integer", default = DEFAULTS.offline_after,
    min = 10, max = 86400, unit = "s", nodes = NODES,
    description = "Seconds without data before the node is reported offline",
}

-------------------------------------------------------------------------------------------
-- Constants built once per load
-------------------------------------------------------------------------------------------
local P = gw.prefix
local publish, iso8601, json = gw.publish, gw.iso8601, gw.json

-- The nine metrics, declaratively: gw.mapper compiles this once (topics checked, line-protocol
-- series escaped and sorted) and MAP(pkt) then publishes + writes every metric the packet
-- carries in one C call, in this order. A missing or non-numeric value is skipped.
local MAP = gw.mapper({
    {path = "n1.t", topic = P .. "/node1/temperature", qos = 1, retain = true,
     measurement = "temperature", tags = {node = "node1", unit = "celsius"}},
    {path = "n1.h", topic = P .. "/node1/humidity", qos = 1, retain = true,
     measurement = "humidity", tags = {node = "node1", unit = "percent"}},
    {path = "n1.g", topic = P .. "/node1/gas_resistance", qos = 1, retain = true,
     measurement = "gas_resistance", tags = {node = "node1", unit = "ohms"}},
    {path = "n2.t", topic = P .. "/node2/temperature", qos = 1, retain = true,
     measurement = "temperature", tags = {node = "node2", unit = "celsius"}},
    {path = "n2.h", topic = P .. "/node2/humidity", qos = 1, retain = true,
     measurement = "humidity", tags = {node = "node2", unit = "percent"}},
    -- The link figures are node 2's (the receiver): `ha` puts them on its Home Assistant device.
    {path = "sig.rssi", topic = P .. "/signal/rssi", qos = 1,
     measurement = "rssi", tags = {node = "signal", unit = "dbm"},
     ha = {node = "node2", name = "RSSI"}},
    {path = "sig.snr", topic = P .. "/signal/snr", qos = 1,
     measurement = "snr", tags = {node = "signal", unit = "db"},
     ha = {node = "node2", name = "SNR"}},
    {path = "sts.rx", topic = P .. "/stats/packets_received", qos = 1,
     measurement = "packets_received", tags = {node = "stats"},
     ha = {node = "node2", name = "Packets received"}},
    {path = "sts.err", topic = P .. "/stats/crc_errors", qos = 1,
     measurement = "crc_errors", tags = {node = "stats"},
     ha = {node = "node2", name = "CRC errors"}},
})

local ALERT_TOPIC = {}
for _, node in ipairs({"node1", "node2"}) do
    ALERT_TOPIC[node] = {
        temperature = P .. "/alerts/" .. node .. "/temperature",
        offline = P .. "/alerts/" .. node .. "/offline",
    }
    -- Declared up front so that front-ends (Home Assistant discovery) show them before they fire.
    gw.describe_alert(ALERT_TOPIC[node].temperature,
                      {node = node, name = "Temperature alert", device_class = "heat"})
    gw.describe_alert(ALERT_TOPIC[node].offline,
                      {node = node, name = "Offline", device_class = "problem"})
end

-- gw.state is handed over on reload; fill in what a first load (or an older rule) lacks.
local S = gw.state
S.last_seen = S.last_seen or {}      -- node -> seconds (float) of its last data
S.temp_firing = S.temp_firing or {}  -- node -> true while the temperature alert fires
S.offline = S.offline or {}          -- node -> true while the offline alert fires

-------------------------------------------------------------------------------------------
-- Alerts
-------------------------------------------------------------------------------------------
local function alert(node, kind, firing, value, threshold, when)
    local topic = (ALERT_TOPIC[node] or {})[kind] or (P .. "/alerts/" .. node .. "/" .. kind)
    publish(topic, json({
        node = node,
        state = firing and "firing" or "ok",
        value = value,
        threshold = threshold,
        time = iso8601(when),
    }), 1, true)
end

-- Hot path below: per packet it runs for every node, so the state tables and param handles
-- are bound to locals once (gw.state's tables and the handles are the same objects for the
-- whole life of this load).
local type = type
local LAST, FIRING, OFFLINE = S.last_seen, S.temp_firing, S.offline

local function check_temperature(node, t, now)
    -- not a number, NaN or +-inf (a device's 1e999): the mapper refused it, no alert either
    if type(t) ~= "number" or t ~= t or t == math.huge or t == -math.huge then
        return
    end
    if FIRING[node] then
        local clear = TEMP_CLEAR[node]
        if t < clear then
            FIRING[node] = nil
            alert(node, "temperature", false, t, clear, now)
        end
    else
        local high = TEMP_HIGH[node]
        if t >= high then
            FIRING[node] = true
            alert(node, "temperature", true, t, high, now)
        end
    end
end

-- Data from `node` arrived: clear its offline alert if it was firing, remember the time.
local function back_online(node, now)
    OFFLINE[node] = nil
    alert(node, "offline", false, math.floor(now - LAST[node]), OFFLINE_AFTER[node], now)
end

-------------------------------------------------------------------------------------------
-- Hooks
-------------------------------------------------------------------------------------------
function on_packet(pkt, meta)
    MAP(pkt)

    local now = meta.rx_ns / 1e9
    local n1, n2 = pkt.n1, pkt.n2
    if type(n1) == "table" then
        if OFFLINE.node1 then
            back_online("node1", now)
        end
        LAST.node1 = now
        check_temperature("node1", n1.t, now)
    end
    -- node 2 prints every packet, so any packet means node 2 is alive
    if OFFLINE.node2 then
        back_online("node2", now)
    end
    LAST.node2 = now
    if type(n2) == "table" then
        check_temperature("node2", n2.t, now)
    end
end

function on_tick(now)
    for node, last in pairs(LAST) do
        local after = OFFLINE_AFTER[node]
        if after and not OFFLINE[node] and now - last >= after then
            OFFLINE[node] = true
            alert(node, "offline", true, math.floor(now - last), after, now)
        end
    end
end
