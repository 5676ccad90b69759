# rules/tests/default.t — rules/default.lua: the nine metrics, number formats, missing node 2
# keys, the temperature alert's hysteresis edges, the offline watchdog in virtual time, and
# what the gateway dead-letters around the rule.
#
# Run: iiotgw test rules/tests/*.t      Format: docs/rules.md, "Rule tests".
# Virtual time starts at 2026-01-01T00:00:00Z (1767225600 s); ticks run every second of it.

--- rule: ../default.lua

=== TEST 1: one full packet publishes and writes the nine metrics in order
--- input
INFO  telemetry {"ts":873000,"id":"N2","n1":{"t":27.6,"h":54.1,"g":84190},"n2":{"t":26.8,"h":48.8},"sig":{"rssi":-39,"snr":13},"sts":{"rx":1,"err":0}}
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
--- points
temperature,node=node1,unit=celsius value=27.6 1767225600000000000
humidity,node=node1,unit=percent value=54.1 1767225600000000000
gas_resistance,node=node1,unit=ohms value=84190 1767225600000000000
temperature,node=node2,unit=celsius value=26.8 1767225600000000000
humidity,node=node2,unit=percent value=48.8 1767225600000000000
rssi,node=signal,unit=dbm value=-39 1767225600000000000
snr,node=signal,unit=db value=13 1767225600000000000
packets_received,node=stats value=1 1767225600000000000
crc_errors,node=stats value=0 1767225600000000000
--- alerts
--- deadletters

=== TEST 2: integers stay integers on MQTT, floats keep their ".0"
--- input
{"n1":{"t":24.0,"h":50,"g":84190.0}}
--- publishes
iiot/node1/temperature qos=1 retain=1 24.0
iiot/node1/humidity qos=1 retain=1 50
iiot/node1/gas_resistance qos=1 retain=1 84190.0

=== TEST 3: node 2's keys missing (sensor read failed): its metrics are skipped
--- input
{"n1":{"t":23.6,"h":52.8,"g":91602},"n2":{},"sig":{"rssi":-61,"snr":10},"sts":{"rx":1,"err":1}}
{"n1":{"t":23.6},"n2":{"t":22.1},"sts":{"rx":2}}
{"n1":{"t":23.5}}
--- publishes
iiot/node1/temperature qos=1 retain=1 23.6
iiot/node1/humidity qos=1 retain=1 52.8
iiot/node1/gas_resistance qos=1 retain=1 91602
iiot/signal/rssi qos=1 retain=0 -61
iiot/signal/snr qos=1 retain=0 10
iiot/stats/packets_received qos=1 retain=0 1
iiot/stats/crc_errors qos=1 retain=0 1
iiot/node1/temperature qos=1 retain=1 23.6
iiot/node2/temperature qos=1 retain=1 22.1
iiot/stats/packets_received qos=1 retain=0 2
iiot/node1/temperature qos=1 retain=1 23.5
--- alerts
--- deadletters

=== TEST 4: temperature alert: fires at 35.0, not at 34.9; clears below 33.0, not at 33.0
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

=== TEST 5: offline watchdog: 120 s of silence fire it at the right virtual time, data clears it
# Both nodes fire on the same tick; the rule walks its nodes with pairs(), so their order is
# not fixed: compared unordered.
--- input
{"n1":{"t":25.0}}
@advance 119
@advance 1
{"sts":{"rx":3}}
@advance 30
{"n1":{"t":25.1}}
--- alerts: unordered
iiot/alerts/node1/offline qos=1 retain=1 {"node":"node1","state":"firing","threshold":120,"time":"2026-01-01T00:02:00Z","value":120}
iiot/alerts/node2/offline qos=1 retain=1 {"node":"node2","state":"firing","threshold":120,"time":"2026-01-01T00:02:00Z","value":120}
iiot/alerts/node2/offline qos=1 retain=1 {"node":"node2","state":"ok","threshold":120,"time":"2026-01-01T00:02:00Z","value":120}
iiot/alerts/node1/offline qos=1 retain=1 {"node":"node1","state":"ok","threshold":120,"time":"2026-01-01T00:02:30Z","value":150}
--- points
~ temperature,node=node1,unit=celsius value=25 1767225600000000000
packets_received,node=stats value=3 1767225720000000000
temperature,node=node1,unit=celsius value=25.1 1767225750000000000

=== TEST 6: node 1 silent while node 2 keeps printing: only node 1 goes offline
--- input
{"n1":{"t":25.0}}
@every 10
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
{"n2":{"t":24.0}}
--- alerts
iiot/alerts/node1/offline qos=1 retain=1 {"node":"node1","state":"firing","threshold":120,"time":"2026-01-01T00:02:00Z","value":120}

=== TEST 7: what cannot be used is dead-lettered, text lines are not
--- input
INFO  Node 2 receiver starting (simulated), RYLR998 on UART4
INFO  telemetry {"n1":{"t":27.6,"h":54.1
INFO  telemetry {"n1":{"t":27.6,}}
{"n1":{"t":27.7}}
--- deadletters
unterminated input:2 JSON object never closes (line cut short?)
~ invalid_json input:3 .*
--- publishes
iiot/node1/temperature qos=1 retain=1 27.7

=== TEST 8: a line longer than max_line is dead-lettered whole, the next line is framed normally
--- config
max_line = 64
--- input
INFO  telemetry {"n1":{"t":27.6,"h":54.1,"g":84190},"n2":{"t":26.8,"h":48.8},"sig":{"rssi":-39}}
{"n1":{"t":27.7}}
--- deadletters
overlong input:1 line longer than max_line (64 bytes); first 64 kept
--- publishes
iiot/node1/temperature qos=1 retain=1 27.7

=== TEST 9: the recorded sample session, one line every 10 s: no alert, no rule error
--- input
@every 10
@file ../../tests/data/probe-rs-session.log
--- alerts
# The three lines the RTT buffer cut short (tests/data/probe-rs-session.facts.json).
--- deadletters
unterminated probe-rs-session.log:98 JSON object never closes (line cut short?)
unterminated probe-rs-session.log:184 JSON object never closes (line cut short?)
unterminated probe-rs-session.log:220 JSON object never closes (line cut short?)

=== TEST 10: thresholds are tunable parameters: changed per node, the live rule follows
# temp_clear first: it must stay below temp_high (the rule declares that constraint).
--- input
@param temp_clear node1 = 28
@param temp_high node1 = 30
{"n1":{"t":30.5},"n2":{"t":30.5}}
@advance 10
@param offline_after node2 = 60
@advance 55
--- alerts
iiot/alerts/node1/temperature qos=1 retain=1 {"node":"node1","state":"firing","threshold":30.0,"time":"2026-01-01T00:00:00Z","value":30.5}
iiot/alerts/node2/offline qos=1 retain=1 {"node":"node2","state":"firing","threshold":60,"time":"2026-01-01T00:01:00Z","value":60}
