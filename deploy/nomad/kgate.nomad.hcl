# kgate as a Nomad system job: one kgate on every client node, so every
# service on the node reaches Kafka as plaintext on 127.0.0.1:19092 while
# kgate speaks mTLS to Amazon MSK (port 9094).
#
#   nomad var put nomad/jobs/kgate \
#       client_cert=@client.pem client_key=@client.key key_passphrase=@client.pass
#   nomad job run -var 'image=registry.example.com/kgate:0.1.0' \
#       -var 'bootstrap=["b-1.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com:9094","b-2.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com:9094"]' \
#       deploy/nomad/kgate.nomad.hcl
#
# Driver: docker, with the image from deploy/docker/Dockerfile and
# network_mode = "host". Host networking is what makes "localhost:19092" mean
# the same on the node as in kgate: kgate binds the node's loopback, and no
# other allocation can reach a container's loopback. The ports below are
# declared statically so that Nomad reserves them on every node (no other job
# can take them) even though kgate binds them on 127.0.0.1 only.
# (The `exec` driver with an `artifact` for the binary works the same way, as
# it also shares the host's network; change `driver`, drop `image`, and set
# `command = "local/kgate"`.)
#
# Ports: bootstrap 19092; MSK's b-1, b-2, b-3 (node ids 1-3) land on
# port_base + 1 + node id = 19094, 19095, 19096. A cluster with more brokers
# needs one more port each. The admin endpoint (9644) binds the node's own
# address so that Prometheus and the health checks can reach it.
#
# Services in bridge-mode allocations cannot reach the node's 127.0.0.1. For
# them, set bind_host to the node's address ({{ env "attr.unique.network.ip-address" }})
# in the template and protect the ports with a host firewall or downstream TLS.
#
# Certificates come from Nomad Variables at nomad/jobs/kgate (tasks of this
# job may read that path without any ACL policy). When they change, Nomad
# re-renders the files and sends SIGHUP; kgate re-reads its certificates and
# new connections use them. Rendering cert and key are two steps: in between,
# kgate keeps the old pair (a key that does not match its certificate is
# logged and ignored) until the second SIGHUP completes the rotation.
#
# Stopping: SIGTERM makes /readyz answer 503, closes the listeners and lets
# connections finish in-flight requests for drain_timeout_ms (20 s); a second
# signal exits at once. kill_timeout (30 s) is above that. Note that a Nomad
# client caps kill_timeout at its max_kill_timeout (30 s by default).

variable "image" {
  type        = string
  description = "kgate image built from deploy/docker/Dockerfile"
  default     = "registry.example.com/kgate:0.1.0"
}

variable "datacenters" {
  type    = list(string)
  default = ["*"]
}

variable "bootstrap" {
  type        = list(string)
  description = "MSK brokers, TLS port 9094"
  default = [
    "b-1.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com:9094",
    "b-2.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com:9094",
    "b-3.mycluster.abc123.c2.kafka.us-east-1.amazonaws.com:9094",
  ]
}

job "kgate" {
  type        = "system"
  datacenters = var.datacenters
  priority    = 80

  update {
    max_parallel     = 1
    min_healthy_time = "10s"
    healthy_deadline = "2m"
  }

  group "kgate" {
    network {
      mode = "host"
      port "bootstrap" {
        static = 19092
      }
      port "b1" {
        static = 19094
      }
      port "b2" {
        static = 19095
      }
      port "b3" {
        static = 19096
      }
      port "admin" {
        static = 9644
      }
    }

    restart {
      attempts = 10
      interval = "5m"
      delay    = "5s"
      mode     = "delay"
    }

    service {
      name     = "kgate"
      provider = "nomad"
      port     = "admin"
      tags     = ["kafka-proxy", "metrics"]

      # Ready: listeners bound and the upstream reached and authenticated
      # recently. Not ready during a drain.
      check {
        name     = "kgate-ready"
        type     = "http"
        path     = "/readyz"
        interval = "10s"
        timeout  = "2s"
      }

      # Alive: restart the task when the process stops answering.
      check {
        name     = "kgate-alive"
        type     = "http"
        path     = "/healthz"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "30s"
        }
      }
    }

    task "kgate" {
      driver = "docker"

      config {
        image        = var.image
        network_mode = "host"
        # The image's ENTRYPOINT is ["/kgate", "run"]; the task directory's
        # local/ is mounted at /local, secrets/ at /secrets.
        args = ["--config", "/local/kgate.toml"]
        # Two descriptors per client connection (client + broker socket):
        # max_connections 2048 needs about 4,250 with listeners and admin.
        ulimit {
          nofile = "16384:16384"
        }
      }

      kill_signal  = "SIGTERM"
      kill_timeout = "30s"

      env {
        KGATE_LOG_FORMAT = "json"
      }

      # 128 MiB holds max_connections = 2048 with mTLS to the brokers
      # (benches/RESULTS.md: 8 MiB idle + 20.6 KiB per idle connection + the
      # 32 MiB buffer budget + a 28 MiB burst of 50 large Fetches: about 109 MiB,
      # checked by tests/e2e/test_deploy_limits.py). For 4096 connections
      # raise memory to 192.
      resources {
        cpu    = 300
        memory = 128
      }

      # Certificates from Nomad Variables; SIGHUP on change. The container
      # runs as uid/gid 65532, so the files are rendered for that user.
      template {
        destination   = "secrets/client.pem"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{- with nomadVar "nomad/jobs/kgate" }}{{ .client_cert }}{{ end }}
          EOT
      }

      template {
        destination   = "secrets/client.key"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{- with nomadVar "nomad/jobs/kgate" }}{{ .client_key }}{{ end }}
          EOT
      }

      template {
        destination   = "secrets/client.pass"
        perms         = "0400"
        uid           = 65532
        gid           = 65532
        change_mode   = "signal"
        change_signal = "SIGHUP"
        data          = <<-EOT
          {{- with nomadVar "nomad/jobs/kgate" }}{{ .key_passphrase }}{{ end }}
          EOT
      }

      # With Vault instead (KV v2 at kv/kgate, and a `vault { policies = [...] }`
      # block in this task), each certificate template's data becomes e.g.:
      #   {{ with secret "kv/data/kgate" }}{{ .Data.data.client_cert }}{{ end }}

      # The configuration. A change restarts the task (through a drain).
      template {
        destination = "local/kgate.toml"
        change_mode = "restart"
        data        = <<-EOT
          bootstrap = ${jsonencode(var.bootstrap)}
          bind_host = "127.0.0.1"
          port_base = 19092
          admin_listen = "{{ env "NOMAD_ADDR_admin" }}"
          drain_timeout_ms = 20000
          max_connections = 2048
          max_connections_per_listener = 1024
          idle_timeout_ms = 600000
          log_level = "info"

          [upstream_tls]
          enabled = true
          cert_file = "/secrets/client.pem"
          key_file = "/secrets/client.key"
          key_passphrase_file = "/secrets/client.pass"
          EOT
      }
    }
  }
}
