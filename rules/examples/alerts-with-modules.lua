-- rules/examples/alerts-with-modules.lua — rules/default.lua rewritten with the reusable
-- modules from lua/: the same nine metrics through gw.mapper, the same temperature and
-- offline alerts (same topics, same payloads) through lua/alerts.lua instead of hand-written
-- state handling, plus a smoothed node 1 temperature from lua/smooth.lua.
--
-- Run it from the repository root (its own directory is rules/examples, so the default
-- search path would look in rules/examples and rules/lua; point it at lua/):
--   iiotgw --dry-run -r rules/examples/alerts-with-modules.lua -o lua_path=lua -s file:capture.log
-- Installed (Docker image), the modules are in /usr/local/share/iiotgw/lua, which the
-- default search path includes, so no lua_path is needed there.
--
-- Output per packet: exactly the publishes and points of rules/default.lua (tested byte for
-- byte in tests/rules/test_rules_modules.c), then
--   <prefix>/node1/temperature_avg   mean of the last 6 node 1 temperatures (1 minute at 10 s)
-- Alert state lives in gw.state (the modules put it there), so a hot reload keeps it. After
-- editing a module, send SIGHUP or touch this file: the daemon watches only the rule file.
--

local alerts = require("alerts")
local smooth = require("smooth")

-------------------------------------------------------------------------------------------
-- Thresholds: the same tunable parameters as rules/default.lua (docs/tuning.md)
-------------------------------------------------------------------------------------------
local NODES = {"node1", "node2"}
local TEMP_HIGH = gw.param{
    name = "temp_high", default = 35.0, min = -40, max = 125, step = 0.5, unit = "°C",
    nodes = NODES, description = "Temperature at or above which the node's temperature alert fires",
}
local TEMP_CLEAR = gw.param{
    name = "temp_clear", default = 33.0, min = -40, max = 125, step = 0.5, unit = "°C",
    nodes = NODES, below = "temp_high",
    description = "Temperature below which a firing temperature alert clears",
}
local OFFLINE_AFTER = gw.param{
    name = "offline_after", type = "integer", default = 120, min = 10, max = 86400, unit = "s",
    nodes = NODES, description = "Seconds without data before the node is reported offline",
}

local P = gw.prefix

-- The nine metrics of rules/default.lua, declaratively (see docs/rules.md, gw.mapper).
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
    -- The link figures are node 2's (the receiver), as in default.lua.
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

-- One temperature alert and one offline watchdog per node; payloads carry {"node": ...}.
local HOT, SILENT = {}, {}
for _, node in ipairs(NODES) do
    HOT[node] = alerts.threshold{
        topic = P .. "/alerts/" .. node .. "/temperature",
        high = TEMP_HIGH, clear = TEMP_CLEAR, node = node,
        key = "alert_temp_" .. node, fields = {node = node},
    }
    SILENT[node] = alerts.watchdog{
        topic = P .. "/alerts/" .. node .. "/offline",
        after = OFFLINE_AFTER, node = node,
        key = "alert_offline_" .. node, fields = {node = node},
    }
end

local AVG_TOPIC = P .. "/node1/temperature_avg"
local avg1 = smooth.average{n = 6, key = "node1_temp_avg"}

function on_packet(pkt, meta)
    MAP(pkt)

    local now = meta.rx_ns / 1e9
    local n1, n2 = pkt.n1, pkt.n2
    if type(n1) == "table" then
        SILENT.node1:seen(now)
        HOT.node1:update(n1.t, now)
    end
    -- node 2 prints every packet, so any packet means node 2 is alive
    SILENT.node2:seen(now)
    if type(n2) == "table" then
        HOT.node2:update(n2.t, now)
    end

    if type(n1) == "table" and type(n1.t) == "number" then
        gw.publish(AVG_TOPIC, avg1:add(n1.t), 1, true)
    end
end

function on_tick(now)
    for _, node in ipairs(NODES) do
        SILENT[node]:check(now)
    end
end
