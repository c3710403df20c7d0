#!/usr/bin/env bash
# The shell baseline of ci/bench: env-qemu's job (start, add, del, stop) done the careful
# way with iproute2, one `ip` process per kernel change. Not a product: no locking, no
# rollback, no sysctls (the port keeps accept_ra/autoconf; DAD is skipped with `nodad`).
#
#   bridge.sh [-n NETNS] [-b BRIDGE] [-s STATEFILE] start IFACE
#   bridge.sh [-n NETNS] [-b BRIDGE] [-s STATEFILE] add TAP | del TAP | stop
#
# start: a bridge with IFACE's MAC and MTU, STP off, forward delay 0, up; IFACE's
# addresses (IPv4 primaries first, IPv6 with `nodad`: they are already unique on this
# link) added to it; IFACE enslaved; every route through IFACE, in every table, moved with
# `ip route replace`; IFACE's addresses deleted. What it moved is saved in STATEFILE first.
# stop: the addresses back on IFACE, its routes appended behind the bridge's, the bridge
# deleted (which releases IFACE and takes the bridge's routes with it).
# Needs bash and iproute2 only. Exit status: that of the first command that failed.
set -euo pipefail

usage() {
  echo "usage: $0 [-n NETNS] [-b BRIDGE] [-s STATEFILE] start IFACE | add TAP | del TAP | stop" >&2
  exit 2
}

netns="" bridge="lepont" state=""
while getopts "n:b:s:" opt; do
  case $opt in
    n) netns=$OPTARG ;;
    b) bridge=$OPTARG ;;
    s) state=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
(($# >= 1)) || usage

ip=(ip)
[[ -n $netns ]] && ip+=(-n "$netns")
state=${state:-/run/bridge-sh/${netns:-host}-$bridge.state}

# One address per line, as `ip addr add` arguments (without `dev`): primaries first, IPv6
# with `nodad`. Kernel-only flags (secondary, tentative, permanent…) are not arguments.
addresses_of() {
  local fam addr rest w valid preferred secondary i a
  local -a words args primaries=() secondaries=()
  while read -r _ _ fam addr rest; do
    read -ra words <<<"$rest"
    args=("$addr") valid=forever preferred=forever secondary=0
    for ((i = 0; i < ${#words[@]}; i++)); do
      w=${words[i]}
      case $w in
        brd | scope) args+=("$w" "${words[i + 1]}"); ((i += 1)) ;;
        valid_lft) valid=${words[i + 1]%sec}; ((i += 1)) ;;
        preferred_lft) preferred=${words[i + 1]%sec}; ((i += 1)) ;;
        noprefixroute | mngtmpaddr | home | autojoin) args+=("$w") ;;
        secondary) secondary=1 ;;
      esac
    done
    if [[ $valid != forever || $preferred != forever ]]; then
      args+=(valid_lft "$valid" preferred_lft "$preferred")
    fi
    [[ $fam == inet6 ]] && args+=(nodad)
    if ((secondary)); then secondaries+=("${args[*]}"); else primaries+=("${args[*]}"); fi
  done < <("${ip[@]}" -o addr show dev "$1")
  for a in "${primaries[@]}" "${secondaries[@]}"; do echo "$a"; done
}

# Every route through $1 in every table, as `ip route` arguments (without `dev`; `-6`
# prepended for IPv6). Left out: what the kernel derives from addresses (proto kernel,
# table local, broadcast/multicast) and read-only words (expires, linkdown…).
routes_of() {
  local line word
  "${ip[@]}" route show table all dev "$1" | while read -r line; do
    case " $line " in
      *" proto kernel "* | *" table local "* | " local "* | " broadcast "* | " multicast "* | " anycast "*) continue ;;
    esac
    if [[ $line =~ ^(.*)\ expires\ [0-9]+sec(.*)$ ]]; then
      line="${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
    fi
    for word in linkdown dead offload trap rt_offload rt_trap; do
      line=${line/ $word/}
    done
    if [[ $line == *:* ]]; then echo "-6 $line"; else echo "$line"; fi
  done
}

# `ip [-6] route VERB ROUTE dev DEV`, ROUTE as routes_of prints it.
route() {
  local verb=$1 r=$2 dev=$3
  local -a family=()
  if [[ $r == "-6 "* ]]; then family=(-6); r=${r#-6 }; fi
  # shellcheck disable=SC2086 # $r is a list of ip arguments
  "${ip[@]}" "${family[@]}" route "$verb" $r dev "$dev"
}

start() {
  local nic=$1 mac="" mtu="" a r i
  [[ ! -e $state ]] || { echo "$0: already started ($state)" >&2; exit 4; }
  local -a w
  read -ra w < <("${ip[@]}" -o link show dev "$nic")
  for ((i = 0; i < ${#w[@]}; i++)); do
    case ${w[i]} in
      mtu) mtu=${w[i + 1]} ;;
      link/ether) mac=${w[i + 1]} ;;
    esac
  done
  local -a addrs routes
  mapfile -t addrs < <(addresses_of "$nic")
  mapfile -t routes < <(routes_of "$nic")
  [[ -n $mac && -n $mtu ]] || { echo "$0: cannot read $nic" >&2; exit 3; }

  [[ -d ${state%/*} ]] || mkdir -p "${state%/*}"
  {
    echo "nic $nic"
    for a in "${addrs[@]}"; do echo "addr $a"; done
    for r in "${routes[@]}"; do echo "route $r"; done
  } >"$state.tmp"
  mv "$state.tmp" "$state"

  "${ip[@]}" link add "$bridge" address "$mac" mtu "$mtu" type bridge stp_state 0 forward_delay 0
  "${ip[@]}" link set dev "$bridge" up
  for a in "${addrs[@]}"; do
    # shellcheck disable=SC2086 # $a is a list of ip arguments
    "${ip[@]}" addr add $a dev "$bridge"
  done
  "${ip[@]}" link set dev "$nic" master "$bridge"
  for r in "${routes[@]}"; do route replace "$r" "$bridge"; done
  # Secondaries before their primary (deleting a primary can take its secondaries along).
  for ((i = ${#addrs[@]} - 1; i >= 0; i--)); do
    "${ip[@]}" addr del "${addrs[i]%% *}" dev "$nic"
  done
}

stop() {
  [[ -e $state ]] || { echo "$0: not started ($state)" >&2; exit 3; }
  local nic="" kind rest
  local -a addrs=() routes=()
  while read -r kind rest; do
    case $kind in
      nic) nic=$rest ;;
      addr) addrs+=("$rest") ;;
      route) routes+=("$rest") ;;
    esac
  done <"$state"
  local a r
  for a in "${addrs[@]}"; do
    # shellcheck disable=SC2086
    "${ip[@]}" addr add $a dev "$nic"
  done
  for r in "${routes[@]}"; do route append "$r" "$nic"; done
  "${ip[@]}" link del dev "$bridge"
  rm -f "$state"
}

case $1 in
  start) (($# == 2)) || usage; start "$2" ;;
  add) (($# == 2)) || usage
    "${ip[@]}" link set dev "$2" master "$bridge"
    "${ip[@]}" link set dev "$2" up ;;
  del) (($# == 2)) || usage
    "${ip[@]}" link set dev "$2" nomaster
    "${ip[@]}" link set dev "$2" down ;;
  stop) (($# == 1)) || usage; stop ;;
  *) usage ;;
esac
