#!/bin/bash
# Three simulated machines on this one, for walking docs/CLUSTER.md (ray up ray_cluster.yaml) through
# without hardware: each node is a network namespace (10.77.0.1 head, .2 and .3 workers, on bridge brpc
# with 10.77.0.254, NAT to the internet) with its own PID namespace and /proc (so `ray stop` on one node
# cannot see another's Ray), hostname, /home/paichan, /tmp and /dev/shm, and its own sshd. They share the
# root filesystem (apt-get is serialised across them), the kernel and the cores.
#
#   sudo bash bench/simhosts.sh up|down|status
#
# Needs root. `up` installs iproute2/openssh-server/sudo/iptables/rsync if missing, creates the user
# paichan (key-only login, passwordless sudo), a key pair at $KEY, per-node data under /srv/pcnodes, and
# iptables rules tagged "pcnodes-walk"; `down` removes namespaces, bridge, sshds and those rules (the user,
# the key and /srv/pcnodes stay). For ray_cluster.yaml: head_ip 10.77.0.1, worker_ips [10.77.0.2,
# 10.77.0.3], auth.ssh_private_key $KEY; then RAY_UP_enable_autoscaler_v2=0 ray up as docs/CLUSTER.md says.
set -u
NODES="head w1 w2"
declare -A IP=([head]=10.77.0.1 [w1]=10.77.0.2 [w2]=10.77.0.3)
BR=brpc; BRIP=10.77.0.254; NET=10.77.0.0/24
BASE=/srv/pcnodes; KEY=${SIMHOSTS_KEY:-$BASE/id_walk}; U=paichan
TAG="pcnodes-walk"   # iptables comment marking our rules

ns() { echo "pc-$1"; }
wan_if() { ip -4 route show default | awk '{for(i=1;i<=NF;i++) if($i=="dev"){print $(i+1); exit}}'; }

ensure_pkgs() {
  local miss=()
  for p in iproute2 openssh-server openssh-client sudo iptables rsync; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || miss+=("$p")
  done
  if [ ${#miss[@]} -gt 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${miss[@]}"
  fi
}

ensure_user_and_key() {
  id "$U" >/dev/null 2>&1 || useradd -m -d /home/$U -s /bin/bash "$U"
  usermod -p '*' "$U"            # no password, but not "locked" (sshd refuses locked accounts for pubkey)
  echo "$U ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/90-$U; chmod 440 /etc/sudoers.d/90-$U
  visudo -cqf /etc/sudoers.d/90-$U
  mkdir -p "$(dirname "$KEY")"; [ -f $KEY ] || ssh-keygen -q -t ed25519 -N '' -C "walk@pcnodes" -f $KEY
}

ensure_dirs() {
  mkdir -p /run/sshd /usr/local/sbin $BASE/sbin
  # apt-get serialiser, visible only inside the nodes (bind-mounted over /usr/local/sbin there):
  # the nodes share one root FS, so concurrent apt-get on two "machines" would fight over the dpkg lock.
  cat > $BASE/sbin/apt-get <<'W'
#!/bin/sh
exec /usr/bin/flock -w 1800 /run/pcnodes-apt.lock /usr/bin/apt-get "$@"
W
  chmod 755 $BASE/sbin/apt-get
  for n in $NODES; do
    local d=$BASE/$n
    mkdir -p $d/home $d/tmp $d/ssh $d/etc
    chown $U:$U $d/home; chmod 755 $d/home; chmod 1777 $d/tmp; chmod 700 $d/ssh
    if [ ! -f $d/home/.profile ]; then cp -n /etc/skel/.bash_logout /etc/skel/.bashrc /etc/skel/.profile $d/home/ 2>/dev/null; chown $U:$U $d/home/.bash* $d/home/.profile; fi
    install -d -o $U -g $U -m 700 $d/home/.ssh
    grep -qxF "$(cat $KEY.pub)" $d/home/.ssh/authorized_keys 2>/dev/null || cat $KEY.pub >> $d/home/.ssh/authorized_keys
    chown $U:$U $d/home/.ssh/authorized_keys; chmod 600 $d/home/.ssh/authorized_keys
    [ -f $d/ssh/ssh_host_ed25519_key ] || ssh-keygen -q -t ed25519 -N '' -C "pc-$n" -f $d/ssh/ssh_host_ed25519_key
    [ -f $d/ssh/ssh_host_rsa_key ] || ssh-keygen -q -t rsa -b 2048 -N '' -C "pc-$n" -f $d/ssh/ssh_host_rsa_key
    cat > $d/sshd_config <<C
ListenAddress ${IP[$n]}
Port 22
PidFile $d/sshd.pid
HostKey $d/ssh/ssh_host_ed25519_key
HostKey $d/ssh/ssh_host_rsa_key
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding no
PrintMotd no
AcceptEnv LANG LC_*
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp /usr/lib/openssh/sftp-server
C
    # /etc/netns/<ns>/X is bind-mounted over /etc/X by `ip netns exec`
    mkdir -p /etc/netns/$(ns $n)
    { echo "127.0.0.1 localhost"; echo "::1 localhost ip6-localhost ip6-loopback";
      for m in $NODES; do echo "${IP[$m]} pc-$m"; done; } > /etc/netns/$(ns $n)/hosts
    resolv_for_ns > /etc/netns/$(ns $n)/resolv.conf
  done
}

# Resolver usable from inside a netns: keep the root's nameservers unless they are loopback.
resolv_for_ns() {
  local ns_lines
  ns_lines=$(awk '$1=="nameserver" && $2 !~ /^127\./ && $2 != "::1" {print}' /etc/resolv.conf)
  if [ -z "$ns_lines" ]; then
    # loopback stub (e.g. systemd-resolved): use its upstreams if known, else a public resolver
    ns_lines=$(awk '$1=="nameserver" && $2 !~ /^127\./ {print}' /run/systemd/resolve/resolv.conf 2>/dev/null)
    [ -n "$ns_lines" ] || ns_lines="nameserver 1.1.1.1"
  fi
  echo "$ns_lines"; grep -E '^(search|options)' /etc/resolv.conf || true
}

net_up() {
  ip link show $BR >/dev/null 2>&1 || ip link add $BR type bridge
  ip addr show dev $BR | grep -q "$BRIP/24" || ip addr add $BRIP/24 dev $BR
  ip link set $BR up
  for n in $NODES; do
    local s; s=$(ns $n)
    ip netns list | grep -qw "^$s" || ip netns add $s
    if ! ip link show v$s >/dev/null 2>&1; then
      ip link add v$s type veth peer name eth0 netns $s
    fi
    ip link set v$s master $BR up
    ip -n $s link set lo up
    ip -n $s addr show dev eth0 | grep -q "${IP[$n]}/24" || ip -n $s addr add ${IP[$n]}/24 dev eth0
    ip -n $s link set eth0 up
    ip -n $s route replace default via $BRIP
  done
  sysctl -qw net.ipv4.ip_forward=1
  local wan; wan=$(wan_if)
  iptables -t nat -C POSTROUTING -s $NET ! -d $NET -o $wan -m comment --comment $TAG -j MASQUERADE 2>/dev/null ||
    iptables -t nat -A POSTROUTING -s $NET ! -d $NET -o $wan -m comment --comment $TAG -j MASQUERADE
  iptables -C FORWARD -i $BR -m comment --comment $TAG -j ACCEPT 2>/dev/null ||
    iptables -I FORWARD -i $BR -m comment --comment $TAG -j ACCEPT
  iptables -C FORWARD -o $BR -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment $TAG -j ACCEPT 2>/dev/null ||
    iptables -I FORWARD -o $BR -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment $TAG -j ACCEPT
}

# node.pid: the unshare process in the root PID namespace (sshd.pid holds sshd's pid inside the node's own one)
sshd_alive() { local p=$BASE/$1/node.pid; [ -f $p ] && kill -0 "$(cat $p)" 2>/dev/null && [ -s $BASE/$1/sshd.pid ]; }

sshd_up() {
  for n in $NODES; do
    sshd_alive $n && continue
    local d=$BASE/$n
    # netns (ip netns exec) -> new private mount ns + UTS ns -> per-node /home/paichan, /tmp, /dev/shm, hostname
    # own PID namespace and /proc too: `ray stop` on one node must not see (and kill) another node's Ray
    rm -f $d/sshd.pid
    ip netns exec $(ns $n) unshare --mount --uts --pid --fork --mount-proc --propagation private /bin/sh -ec "
      mount --make-rprivate /
      mount --bind $d/home /home/$U
      mount --bind $d/tmp /tmp
      mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
      mount --bind $BASE/sbin /usr/local/sbin
      hostname pc-$n
      exec /usr/sbin/sshd -D -f $d/sshd_config -E $d/sshd.log
    " > $d/node.log 2>&1 &
    echo $! > $d/node.pid
    for i in $(seq 50); do sshd_alive $n && break; sleep 0.1; done
    sshd_alive $n || { echo "sshd for $n failed; see $d/sshd.log" >&2; return 1; }
  done
}

down() {
  for n in $NODES; do
    local s; s=$(ns $n)
    # "power off" the node: every process living in its netns (sshd and anything started over ssh)
    if ip netns list | grep -qw "^$s"; then
      pids=$(ip netns pids $s); [ -n "$pids" ] && kill $pids 2>/dev/null; sleep 0.5
      pids=$(ip netns pids $s); [ -n "$pids" ] && kill -9 $pids 2>/dev/null
      ip netns del $s
    fi
    if [ -f $BASE/$n/node.pid ]; then kill "$(cat $BASE/$n/node.pid)" 2>/dev/null; rm -f $BASE/$n/node.pid; fi
    rm -f $BASE/$n/sshd.pid
    ip link del v$s 2>/dev/null
    rm -rf /etc/netns/$s
  done
  rmdir /etc/netns 2>/dev/null
  ip link del $BR 2>/dev/null
  # remove only the iptables rules we added (marked with our comment)
  for t in nat filter; do
    iptables -t $t -S | grep -- "--comment $TAG" | sed 's/^-A /-D /' | while read -r r; do eval iptables -t $t $r; done
  done
  rm -rf $BASE/sbin /run/pcnodes-apt.lock
  echo "down: namespaces, bridge, sshds and our iptables rules removed (user $U, key $KEY and $BASE/<node> data kept)"
}

status() {
  ip -br addr show $BR 2>/dev/null; ip netns list
  for n in $NODES; do printf '%-5s %-10s node:%s\n' $n ${IP[$n]} "$(sshd_alive $n && cat $BASE/$n/node.pid || echo down)"; done
  iptables -t nat -S | grep -- "$TAG"; iptables -S FORWARD | grep -- "$TAG"
}

case "${1:-}" in
  up) ensure_pkgs && ensure_user_and_key && ensure_dirs && net_up && sshd_up && status ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
