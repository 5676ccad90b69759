-- docker/iiotgw/iiotgw.lua — iiotgw configuration inside the Docker stack.
--
-- Mounted read-only at /etc/iiotgw/iiotgw.lua by docker-compose.yml. Service names (mosquitto,
-- influxdb) are the compose network's DNS names. What varies per site comes from docker/.env on
-- the command line instead (--influx-org, -s SOURCE, --log-level), so this file has no secrets:
-- the InfluxDB write-only token is read from the file the influxdb-tokens job writes.

-- Rule script; ../rules is bind-mounted here read-only and hot-reloaded when it changes.
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
  url = "http://influxdb:8086",
  api = 2,
  bucket = "telemetry",
  token_file = "/run/iiotgw/influx.token",
  batch_lines = 5000,
  linger = 1.0,
}

-- Store-and-forward: every publish and point is kept on the iiotgw-state volume until the
-- broker / database acknowledged it, so outages and restarts lose nothing (docs/reliability.md).
spool = { dir = "/var/lib/iiotgw/spool", fsync = "interval" }

-- Lines InfluxDB rejects for good (4xx) end up here, on the iiotgw-state volume.
deadletter_file = "/var/lib/iiotgw/deadletter.jsonl"
