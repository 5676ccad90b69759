# rules/tests/smooth.t — lua/smooth.lua through rules/tests/smooth_rule.lua: moving average,
# EMA per sample and by time constant, counter rate with a restart. Values are printed with
# four decimals by the rule, so the expectations are exact.

--- rule: smooth_rule.lua
--- config
lua_path = ../../lua

=== TEST 1: moving average of the last 3 samples, EMA with alpha 0.5
--- input
{"n1":{"t":20.0}}
{"n1":{"t":23.0}}
{"n1":{"t":26.0}}
{"n1":{"t":29.0}}
--- publishes
iiot/test/avg qos=1 retain=0 20.0000
iiot/test/ema qos=1 retain=0 20.0000
iiot/test/ema_tau qos=1 retain=0 20.0000
iiot/test/avg qos=1 retain=0 21.5000
iiot/test/ema qos=1 retain=0 21.5000
iiot/test/ema_tau qos=1 retain=0 20.0000
iiot/test/avg qos=1 retain=0 23.0000
iiot/test/ema qos=1 retain=0 23.7500
iiot/test/ema_tau qos=1 retain=0 20.0000
iiot/test/avg qos=1 retain=0 26.0000
iiot/test/ema qos=1 retain=0 26.3750
iiot/test/ema_tau qos=1 retain=0 20.0000

=== TEST 2: a missing value changes nothing and returns the current result
--- input
{"n1":{"t":20.0}}
{"n1":{}}
{"sig":{"rssi":-40}}
--- publishes
iiot/test/avg qos=1 retain=0 20.0000
iiot/test/ema qos=1 retain=0 20.0000
iiot/test/ema_tau qos=1 retain=0 20.0000
iiot/test/avg qos=1 retain=0 20.0000
iiot/test/ema qos=1 retain=0 20.0000
iiot/test/ema_tau qos=1 retain=0 20.0000
iiot/test/avg qos=1 retain=0 20.0000
iiot/test/ema qos=1 retain=0 20.0000
iiot/test/ema_tau qos=1 retain=0 20.0000

=== TEST 3: EMA by time constant follows the virtual time between samples
# tau = 10 s: after dt = 10 s alpha = 1 - e^-1 = 0.6321; 20 + 0.6321 * 10 = 26.3212.
--- input
@every 10
{"n1":{"t":20.0}}
{"n1":{"t":30.0}}
--- publishes: unordered
iiot/test/ema_tau qos=1 retain=0 20.0000
iiot/test/ema_tau qos=1 retain=0 26.3212
~ iiot/test/avg .*
~ iiot/test/avg .*
~ iiot/test/ema .*
~ iiot/test/ema .*

=== TEST 4: rate per minute of a counter; a restart (the counter goes back) is a new baseline
--- input
@every 30
{"sts":{"rx":10}}
{"sts":{"rx":13}}
{"sts":{"rx":19}}
{"sts":{"rx":2}}
{"sts":{"rx":4}}
--- publishes
iiot/test/rate qos=1 retain=0 6.0000
iiot/test/rate qos=1 retain=0 12.0000
iiot/test/rate qos=1 retain=0 4.0000
