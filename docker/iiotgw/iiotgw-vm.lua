-- docker/iiotgw/iiotgw-vm.lua — iiotgw configuration for the compose profile `vm`
-- (VictoriaMetrics instead of InfluxDB 2).
--
-- Mounted read-only at /etc/iiotgw/iiotgw.lua by the iiotgw-vm service. VictoriaMetrics
-- accepts the InfluxDB v2 write API without a token; org and bucket are ignored by it (the
-- series are <measurement>_<field>{tags}), so nothing here is secret.

rules = "/etc/iiotgw/rules/default.lua"
prefix = "iiot"
log_level = "info"

mqtt = {
  url = "mqtt://mosquitto:1883",
  client_id = "iiotgw-docker",
  protocol = 5,
  keepalive = 30,
  -- With the broker's password file enabled (docs/deployment.md), use
  -- url = "mqtt://iiotgw@mosquitto:1883" and:
  -- password_file = "/run/secrets/mqtt_password",
}

influx = {
  url = "http://victoriametrics:8428",
  api = 2,
  org = "iiot",
  bucket = "telemetry",
  batch_lines = 5000,
  linger = 1.0,
}

-- Store-and-forward on the iiotgw-state volume (docs/reliability.md).
spool = { dir = "/var/lib/iiotgw/spool", fsync = "interval" }
deadletter_file = "/var/lib/iiotgw/deadletter.jsonl"
