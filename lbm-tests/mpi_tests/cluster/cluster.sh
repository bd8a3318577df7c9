#!/usr/bin/env bash
# Several "hosts" on one machine for multi-host tests: each host is a network namespace with its own
# hostname, address and loopback, joined by a bridge in a switch namespace. Nothing is configured outside
# the namespaces this script creates (the bridge has no address; no route leaves the namespaces).
#
# What it simulates: separate nodes on one Ethernet segment, each with one interface and its own
# 127.0.0.1, and OpenMPI launching through a remote shell (agent.sh stands in for ssh). What it does not:
# separate kernels, file systems or /dev/shm (a shared segment is visible to every "host"), or latency and
# bandwidth of a real network (the veth links are memory copies).
#
#   cluster.sh up N        create hosts h1..hN at 10.77.0.11 .. 10.77.0.(10+N)
#   cluster.sh down        kill every process in them, delete them (and their links), remove MPI session dirs
#   cluster.sh cut K       take host K's link down (the cable pulled), cluster.sh mend K to bring it back
#   cluster.sh mpirun N ARGS...   run mpirun from h1 with N ranks spread over the hosts, one per host in turn
#
# Names carry the prefix $LBM_CLUSTER (default lbmc) so that a test run cleans up only its own.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
prefix=${LBM_CLUSTER:-lbmc}
subnet=10.77.0
switch=${prefix}sw

host_ns() { echo "${prefix}h$1"; }
host_ip() { echo "$subnet.$((10 + $1))"; }
hosts() { ip netns list | awk '{print $1}' | grep -E "^${prefix}h[0-9]+$" || true; }

up() {
    local n=$1 k ns
    ip netns add "$switch"
    ip -n "$switch" link add br0 type bridge
    ip -n "$switch" link set br0 up
    for k in $(seq "$n"); do
        ns=$(host_ns "$k")
        ip netns add "$ns"
        ip link add "eth-$ns" type veth peer name "sw-$ns"
        ip link set "eth-$ns" netns "$ns"
        ip link set "sw-$ns" netns "$switch"
        ip -n "$switch" link set "sw-$ns" master br0 up
        ip -n "$ns" link set "eth-$ns" name eth0
        ip -n "$ns" addr add "$(host_ip "$k")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$ns" link set lo up
        # Give up on unacknowledged TCP data after about 3 s instead of 15 minutes, so that mpirun notices
        # a host behind a cut link while it is trying to tell it to stop (keepalive only covers idle links).
        ip netns exec "$ns" sysctl -qw net.ipv4.tcp_retries2=3
    done
}

down() {
    local ns pids
    for ns in $(hosts) "$switch"; do
        ip netns list | grep -qw "$ns" || continue
        pids=$(ip netns pids "$ns" || true)
        [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
        ip netns delete "$ns"
    done
    rm -rf /tmp/ompi."${prefix}"h* 2>/dev/null || true
}

# Runs mpirun inside h1; the other hosts are reached through agent.sh instead of ssh.
run_mpirun() {
    local ranks=$1 k hostfile status=0
    shift
    hostfile=$(mktemp /tmp/lbm-hostfile.XXXXXX)
    for k in $(seq "$(hosts | wc -l)"); do echo "$(host_ip "$k") slots=4"; done >"$hostfile"
    ip netns exec "$(host_ns 1)" unshare --uts /bin/sh -c 'hostname "$0"; exec "$@"' "$(host_ns 1)" \
        env LBM_CLUSTER="$prefix" OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        mpirun -n "$ranks" --hostfile "$hostfile" --map-by node --oversubscribe --bind-to none \
        --mca plm rsh --mca plm_rsh_agent "$here/agent.sh" \
        --mca oob_tcp_if_include "$subnet.0/24" --mca btl_tcp_if_include "$subnet.0/24" \
        --mca btl tcp,self,vader --mca mpi_yield_when_idle 1 \
        --mca oob_tcp_keepalive_time 2 --mca oob_tcp_keepalive_intvl 1 --mca oob_tcp_keepalive_probes 3 \
        -x LIGHTBEAM_HOST="$subnet.0/24" "$@" || status=$?
    rm -f "$hostfile"
    return $status
}

case "${1:-}" in
up) up "${2:?how many hosts}" ;;
down) down ;;
cut) ip -n "$switch" link set "sw-$(host_ns "${2:?which host}")" down ;;
mend) ip -n "$switch" link set "sw-$(host_ns "${2:?which host}")" up ;;
mpirun)
    shift
    run_mpirun "$@"
    ;;
*)
    echo "usage: cluster.sh up N | down | cut K | mend K | mpirun N PROGRAM ARGS..." >&2
    exit 2
    ;;
esac
