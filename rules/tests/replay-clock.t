# rules/tests/replay-clock.t — rules/default.lua with input timed by the capture itself
# (clock.mode = packet: the node's uptime field "ts" in ms; clock.mode = log: the defmt stamp),
# as `--clock packet` / `--clock log` replay it: the first timed line of each source is
# received at the test's start, every later one as much later as its uptime says.

--- rule: ../default.lua
--- config
clock.mode = packet

=== TEST 1: the sample session on the packet clock: its first and last point 1989.5 s apart
--- input
@file ../../tests/data/probe-rs-session.log
--- points: contains
temperature,node=node1,unit=celsius value=23.6 1767225600000000000
~ temperature,node=node1,unit=celsius value=[%d.]+ 1767227589500000000
--- alerts

=== TEST 2: a five-minute silence in the capture fires both offline alerts and clears them
--- input
{"ts":1000,"n1":{"t":25.0}}
{"ts":11000,"n1":{"t":25.1}}
{"ts":311000,"n1":{"t":25.2}}
--- alerts: unordered
iiot/alerts/node1/offline qos=1 retain=1 {"node":"node1","state":"firing","threshold":120,"time":"2026-01-01T00:02:10Z","value":120}
iiot/alerts/node2/offline qos=1 retain=1 {"node":"node2","state":"firing","threshold":120,"time":"2026-01-01T00:02:10Z","value":120}
iiot/alerts/node1/offline qos=1 retain=1 {"node":"node1","state":"ok","threshold":120,"time":"2026-01-01T00:05:10Z","value":300}
iiot/alerts/node2/offline qos=1 retain=1 {"node":"node2","state":"ok","threshold":120,"time":"2026-01-01T00:05:10Z","value":300}
--- points
temperature,node=node1,unit=celsius value=25 1767225600000000000
temperature,node=node1,unit=celsius value=25.1 1767225610000000000
temperature,node=node1,unit=celsius value=25.2 1767225910000000000

=== TEST 3: a node reboot (uptime back to near zero) continues the virtual time, lines without ts keep it
--- input
{"ts":50000,"n1":{"t":25.0}}
{"ts":60000,"n1":{"t":25.1}}
{"ts":2000,"n1":{"t":25.2}}
{"n1":{"t":25.3}}
{"ts":12000,"n1":{"t":25.4}}
--- points
temperature,node=node1,unit=celsius value=25 1767225600000000000
temperature,node=node1,unit=celsius value=25.1 1767225610000000000
temperature,node=node1,unit=celsius value=25.2 1767225612000000000
temperature,node=node1,unit=celsius value=25.3 1767225612000000000
temperature,node=node1,unit=celsius value=25.4 1767225622000000000

=== TEST 4: clock.mode = log takes the defmt stamp at the start of the line
--- config
clock.mode = log
--- input
53.305000 INFO  telemetry {"ts":1,"n1":{"t":25.0}}
63.805000 INFO  telemetry {"ts":2,"n1":{"t":25.1}}
--- points
temperature,node=node1,unit=celsius value=25 1767225600000000000
temperature,node=node1,unit=celsius value=25.1 1767225610500000000
