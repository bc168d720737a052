# Helpers the bench scripts share (sourced after they cd to the repository's root).

# A free loopback port (the kernel picks it; it stays free long enough in practice).
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# callgrind output file -> its instruction total: the "totals:" line (the sum over the
# file's parts; "summary:" is the last part's alone once instrumentation was toggled).
total() {
  awk '/^totals:/ { print $2; exit }' "$1"
}
