-- rules/default.lua — the stock iiotgw rule: the brief's MQTT topics and InfluxDB schema,
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
--   <prefix>/alerts/<node>/temperature  fires when a node's temperature >= THRESHOLDS.temp_high,
--       clears ("state":"ok", published once) when it drops below THRESHOLDS.temp_clear.
--   <prefix>/alerts/<node>/offline      fires when no packet carried the node's data for
--       THRESHOLDS.offline_after seconds (checked in on_tick), clears when data returns.
--   Payload: {"node":"node1","state":"firing"|"ok","threshold":35.0,"time":"<ISO-8601 UTC>",
--             "value":<temperature °C | seconds without data>}
--   "time" is ISO-8601 UTC with whole seconds (gw.iso8601) of the packet (temperature) or of
--   the tick (offline) that changed the state.
-- Node liveness: every packet is printed by node 2, so any packet marks node2 seen; node1 is
-- seen when the packet carries its "n1" object.
--
-- Alert state and last-seen times live in gw.state, so they survive a hot reload.
-- Hot path: topics, tag tables and functions are built once at load time, never per packet.
--
-- Owner: rules engineer.

-------------------------------------------------------------------------------------------
-- THRESHOLDS — edit here
-------------------------------------------------------------------------------------------
local THRESHOLDS = {
    temp_high = 35.0,     -- °C: a node's temperature at or above this fires the alert
    temp_clear = 33.0,    -- °C: the alert clears when the temperature drops below this
    offline_after = 120,  -- s: no data from a node for this long fires the offline alert
}

-------------------------------------------------------------------------------------------
-- Constants built once per load
-------------------------------------------------------------------------------------------
local P = gw.prefix
local publish, point, iso8601, json = gw.publish, gw.point, gw.iso8601, gw.json

local T_N1_T, T_N1_H, T_N1_G = P .. "/node1/temperature", P .. "/node1/humidity",
    P .. "/node1/gas_resistance"
local T_N2_T, T_N2_H = P .. "/node2/temperature", P .. "/node2/humidity"
local T_RSSI, T_SNR = P .. "/signal/rssi", P .. "/signal/snr"
local T_RX, T_ERR = P .. "/stats/packets_received", P .. "/stats/crc_errors"

local TAG_N1_C = {node = "node1", unit = "celsius"}
local TAG_N1_P = {node = "node1", unit = "percent"}
local TAG_N1_O = {node = "node1", unit = "ohms"}
local TAG_N2_C = {node = "node2", unit = "celsius"}
local TAG_N2_P = {node = "node2", unit = "percent"}
local TAG_DBM = {node = "signal", unit = "dbm"}
local TAG_DB = {node = "signal", unit = "db"}
local TAG_STATS = {node = "stats"}

local ALERT_TOPIC = {}
for _, node in ipairs({"node1", "node2"}) do
    ALERT_TOPIC[node] = {
        temperature = P .. "/alerts/" .. node .. "/temperature",
        offline = P .. "/alerts/" .. node .. "/offline",
    }
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

local function check_temperature(node, t, now)
    if type(t) ~= "number" then
        return
    end
    if S.temp_firing[node] then
        if t < THRESHOLDS.temp_clear then
            S.temp_firing[node] = nil
            alert(node, "temperature", false, t, THRESHOLDS.temp_clear, now)
        end
    elseif t >= THRESHOLDS.temp_high then
        S.temp_firing[node] = true
        alert(node, "temperature", true, t, THRESHOLDS.temp_high, now)
    end
end

local function seen(node, now)
    if S.offline[node] then
        S.offline[node] = nil
        alert(node, "offline", false, math.floor(now - S.last_seen[node]),
              THRESHOLDS.offline_after, now)
    end
    S.last_seen[node] = now
end

-------------------------------------------------------------------------------------------
-- Hooks
-------------------------------------------------------------------------------------------
-- Publish + write one metric when the packet has it (JSON null and missing keys skipped).
local function metric(v, topic, retain, measurement, tags)
    if type(v) == "number" then
        publish(topic, v, 1, retain)
        point(measurement, tags, v)
    end
end

function on_packet(pkt, meta)
    local now = meta.rx_ns / 1e9
    local n1, n2, sig, sts = pkt.n1, pkt.n2, pkt.sig, pkt.sts
    if type(n1) == "table" then
        metric(n1.t, T_N1_T, true, "temperature", TAG_N1_C)
        metric(n1.h, T_N1_H, true, "humidity", TAG_N1_P)
        metric(n1.g, T_N1_G, true, "gas_resistance", TAG_N1_O)
    end
    if type(n2) == "table" then
        metric(n2.t, T_N2_T, true, "temperature", TAG_N2_C)
        metric(n2.h, T_N2_H, true, "humidity", TAG_N2_P)
    end
    if type(sig) == "table" then
        metric(sig.rssi, T_RSSI, false, "rssi", TAG_DBM)
        metric(sig.snr, T_SNR, false, "snr", TAG_DB)
    end
    if type(sts) == "table" then
        metric(sts.rx, T_RX, false, "packets_received", TAG_STATS)
        metric(sts.err, T_ERR, false, "crc_errors", TAG_STATS)
    end

    if type(n1) == "table" then
        seen("node1", now)
        check_temperature("node1", n1.t, now)
    end
    seen("node2", now)
    if type(n2) == "table" then
        check_temperature("node2", n2.t, now)
    end
end

function on_tick(now)
    for node, last in pairs(S.last_seen) do
        if not S.offline[node] and now - last >= THRESHOLDS.offline_after then
            S.offline[node] = true
            alert(node, "offline", true, math.floor(now - last), THRESHOLDS.offline_after, now)
        end
    end
end
