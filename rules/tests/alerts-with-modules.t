# rules/tests/alerts-with-modules.t — rules/examples/alerts-with-modules.lua: the same alerts as
# rules/default.lua, made with lua/alerts.lua (threshold with hysteresis, silence watchdog),
# plus node 1's moving average from lua/smooth.lua.

--- rule: ../examples/alerts-with-modules.lua
--- config
lua_path = ../../lua

=== TEST 1: the nine metrics, then the 6-sample average of node 1
--- input
INFO  telemetry {"ts":873000,"id":"N2","n1":{"t":27.6,"h":54.1,"g":84190},"n2":{"t":26.8,"h":48.8},"sig":{"rssi":-39,"snr":13},"sts":{"rx":1,"err":0}}
{"n1":{"t":28.0}}
{"n2":{"t":28.0}}
--- publishes
iiot/node1/temperature qos=1 retain=1 27.6
iiot/node1/humidity qos=1 retain=1 54.1
iiot/node1/gas_resistance qos=1 retain=1 84190
iiot/node2/temperature qos=1 retain=1 26.8
iiot/node2/humidity qos=1 retain=1 48.8
iiot/signal/rssi qos=1 retain=0 -39
iiot/signal/snr qos=1 retain=0 13
iiot/stats/packets_received qos=1 retain=0 1
iiot/stats/crc_errors qos=1 retain=0 0
iiot/node1/temperature_avg qos=1 retain=1 27.6
iiot/node1/temperature qos=1 retain=1 28.0
iiot/node1/temperature_avg qos=1 retain=1 27.8
iiot/node2/temperature qos=1 retain=1 28.0
--- alerts

=== TEST 2: alerts.threshold: fires at 35.0, not at 34.9; clears below 33.0, not at 33.0
--- input
@every 10
{"n1":{"t":34.9}}
{"n1":{"t":35.0}}
{"n1":{"t":36.2}}
{"n1":{"t":33.0}}
{"n1":{"t":32.9}}
{"n1":{"t":32.0}}
{"n1":{"t":35.1},"n2":{"t":35.0}}
--- alerts
iiot/alerts/node1/temperature qos=1 retain=1 {"node":"node1","state":"firing","threshold":35.0,"time":"2026-01-01T00:00:20Z","value":35.0}
iiot/alerts/node1/temperature qos=1 retain=1 {"node":"node1","state":"ok","threshold":33.0,"time":"2026-01-01T00:00:50Z","value":32.9}
iiot/alerts/node1/temperature qos=1 retain=1 {"node":"node1","state":"firing","threshold":35.0,"time":"2026-01-01T00:01:10Z","value":35.1}
iiot/alerts/node2/temperature qos=1 retain=1 {"node":"node2","state":"firing","threshold":35.0,"time":"2026-01-01T00:01:10Z","value":35.0}

=== TEST 3: alerts.watchdog in virtual time: fires after 120 s of silence, clears on data
# This rule checks its nodes in a fixed order, so the order is exact here.
--- input
{"n1":{"t":25.0}}
@advance 119
@advance 1
{"sts":{"rx":3}}
@advance 30
{"n1":{"t":25.1}}
--- alerts
iiot/alerts/node1/offline qos=1 retain=1 {"node":"node1","state":"firing","threshold":120,"time":"2026-01-01T00:02:00Z","value":120}
iiot/alerts/node2/offline qos=1 retain=1 {"node":"node2","state":"firing","threshold":120,"time":"2026-01-01T00:02:00Z","value":120}
iiot/alerts/node2/offline qos=1 retain=1 {"node":"node2","state":"ok","threshold":120,"time":"2026-01-01T00:02:00Z","value":120}
iiot/alerts/node1/offline qos=1 retain=1 {"node":"node1","state":"ok","threshold":120,"time":"2026-01-01T00:02:30Z","value":150}

=== TEST 4: a virtual start time of the test's choosing stamps points and alert times
--- start: 2026-06-15T12:00:00Z
--- input
{"n1":{"t":35.5}}
--- points
~ temperature,node=node1,unit=celsius value=35%.5 1781524800000000000
--- alerts
iiot/alerts/node1/temperature qos=1 retain=1 {"node":"node1","state":"firing","threshold":35.0,"time":"2026-06-15T12:00:00Z","value":35.5}
