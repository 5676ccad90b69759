# rules/tests/virtual-time.t — the test runner's virtual clock, seen from a rule
# (rules/tests/clock_rule.lua): meta.rx_ns, gw.now_ns(), gw.iso8601() and on_tick's now.

--- rule: clock_rule.lua

=== TEST 1: a packet is received at the virtual time; gw.now_ns and gw.iso8601 agree
--- input
{"a":1}
@advance 5.5
{"a":2}
--- publishes
iiot/clock/packet qos=1 retain=0 rx_ns=1767225600000000000 now_ns=1767225600000000000 iso=2026-01-01T00:00:00Z
iiot/clock/tick qos=1 retain=0 1767225601.000
iiot/clock/tick qos=1 retain=0 1767225602.000
iiot/clock/tick qos=1 retain=0 1767225603.000
iiot/clock/tick qos=1 retain=0 1767225604.000
iiot/clock/tick qos=1 retain=0 1767225605.000
iiot/clock/packet qos=1 retain=0 rx_ns=1767225605500000000 now_ns=1767225605500000000 iso=2026-01-01T00:00:05Z

=== TEST 2: ticks follow tick_interval; @tick runs one at the current time
--- config
tick_interval = 2.5
--- start: @1000
--- input
@advance 6
@tick
--- publishes
iiot/clock/tick qos=1 retain=0 1002.500
iiot/clock/tick qos=1 retain=0 1005.000
iiot/clock/tick qos=1 retain=0 1006.000

=== TEST 3: text lines reach on_line with their source and line number; steps are not lines
--- input
INFO  Node 2 receiver starting
@advance 1
@@ not a step
--- publishes
iiot/clock/line qos=1 retain=0 input:1 rx_ns=1767225600000000000
iiot/clock/tick qos=1 retain=0 1767225601.000
iiot/clock/line qos=1 retain=0 input:2 rx_ns=1767225601000000000

=== TEST 4: an error in on_tick is dead-lettered with source "tick", and the next tick runs
--- input
{"fail":true}
@advance 2
--- deadletters
~ rule_error tick:0 .*clock_rule%.lua:%d+: tick failed on purpose
--- publishes
iiot/clock/packet qos=1 retain=0 rx_ns=1767225600000000000 now_ns=1767225600000000000 iso=2026-01-01T00:00:00Z
iiot/clock/tick qos=1 retain=0 1767225602.000
