# The front door (issue 17, docs/front-door.md): HAProxy in front of several
# whoconn servers (contrib/haproxy/), TLS at the front, and the health-check
# recipes (HAProxy tcp-check, check_tcp, the blackbox exporter's tcp
# module).  tests/front.bats runs them against the real binary in make
# check's check-suites stage; these are the packages it needs.  Debian's
# haproxy package enables its own haproxy.service, which the tests never
# use (they run haproxy in the foreground on loopback ports).
DEPS_FRONT = haproxy socat openssl curl monitoring-plugins-basic prometheus-blackbox-exporter
DEPS_CHECK += $(DEPS_FRONT)
