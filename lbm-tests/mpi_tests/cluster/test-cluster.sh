#!/usr/bin/env bash
# Multi-host tests: OpenMPI launches ranks into network-namespace hosts (cluster.sh) and Lightbeam moves the
# data between their addresses. Covers the distributed example, every collective against MPI (with 2 ranks
# per host too, and scatter and gather by node), every typed collective against MPI (with 2 ranks per host
# too, where reductions fold node by node), the mesh,
# the broadcast demo across 2 and 4 hosts, and faults: a link cut mid-broadcast and mid-all-to-all, and a
# rank killed on one host. Always tears down every namespace, link and process it made. Needs root.
# Run from the repository root after `cargo build --release --workspace --examples --bins`; scripts/test.sh does both.
set -euo pipefail
cd "$(dirname "$0")/../../.."
cluster=lbm-tests/mpi_tests/cluster/cluster.sh
export LBM_CLUSTER=lbmc
logs=$(mktemp -d /tmp/lightbeam-cluster.XXXXXX)
touch "$logs/started" # segments newer than this are this run's
finish() {
    $cluster down
    rm -rf "$logs"
}
trap finish EXIT
$cluster down # what an interrupted earlier run may have left

now_ms() { date +%s%3N; }

fail() {
    echo "cluster: $*" >&2
    exit 1
}

# Runs mpirun across the hosts with a time limit; output in $logs/$name.log.
run() {
    local name=$1 limit=$2
    shift 2
    timeout --kill-after=5 "$limit" $cluster mpirun "$@" >"$logs/$name.log" 2>&1
}

expect_ok() {
    local name=$1 ranks=$2 scenario=$3
    run "$name" 300 "$ranks" "${@:4}" || { cat "$logs/$name.log" >&2; fail "$name failed"; }
    [ "$(grep -c ": $scenario ok" "$logs/$name.log")" -eq "$ranks" ] || { cat "$logs/$name.log" >&2; fail "$name: not every rank ok"; }
}

for hosts in 2 4; do
    # Exactly $hosts hosts, so that 2 x $hosts ranks run 2 per host.
    $cluster down
    $cluster up "$hosts"
    run "distributed-$hosts" 120 "$hosts" target/release/examples/distributed || fail "distributed on $hosts hosts"
    for k in $(seq 2 "$hosts"); do
        grep -q "rank $((k - 1)) at tcp://10.77.0.$((10 + k)):" "$logs/distributed-$hosts.log" ||
            { cat "$logs/distributed-$hosts.log" >&2; fail "rank $((k - 1)) did not use host $k's address"; }
    done
    echo "cluster: distributed example on $hosts hosts:"
    sed 's/^/  /' "$logs/distributed-$hosts.log"
    expect_ok "collectives-$hosts" "$hosts" each target/release/lbm-test-collectives each
    echo "cluster: every collective agrees with MPI on $hosts hosts"
    expect_ok "typed-$hosts" "$hosts" typed target/release/lbm-test-typed typed
    echo "cluster: every typed collective agrees with MPI on $hosts hosts"
    expect_ok "mesh-$hosts" "$((2 * hosts))" pairs target/release/lbm-test-mesh pairs
    echo "cluster: all pairs of $((2 * hosts)) ranks on $hosts hosts exchanged checksummed data"
    # Two ranks per host: shared memory within a host, ZeroMQ between hosts, in every collective; scatter
    # and gather by node, each counting that one message per other node reaches a gather's root.
    expect_ok "collectives-mixed-$hosts" "$((2 * hosts))" each target/release/lbm-test-collectives each
    echo "cluster: every collective agrees with MPI on $((2 * hosts)) ranks, 2 per host"
    expect_ok "typed-mixed-$hosts" "$((2 * hosts))" typed target/release/lbm-test-typed typed
    grep -q "agrees with MPI at 1048584 B on $((2 * hosts)) ranks, $hosts nodes" "$logs/typed-mixed-$hosts.log" ||
        { cat "$logs/typed-mixed-$hosts.log" >&2; fail "typed-mixed-$hosts: not on $hosts nodes"; }
    echo "cluster: every typed collective agrees with MPI on $((2 * hosts)) ranks, 2 per host, folded node by node"
    expect_ok "by-node-$hosts" "$((2 * hosts))" by-node target/release/lbm-test-collectives by-node
    grep -q "scatter and gather by node from every root on $((2 * hosts)) ranks, $hosts nodes" "$logs/by-node-$hosts.log" ||
        { cat "$logs/by-node-$hosts.log" >&2; fail "by-node-$hosts: not by node"; }
    echo "cluster: scatter and gather by node on $((2 * hosts)) ranks, one message per other node at the root"
    run "demo-$hosts" 300 "$hosts" target/release/examples/broadcast --size 256MiB || fail "demo on $hosts hosts"
    grep -q "verified: all $hosts ranks" "$logs/demo-$hosts.log" || fail "demo on $hosts hosts unverified"
    echo "cluster: broadcast demo on $hosts hosts:"
    grep -E "^(lightbeam|MPI_Bcast):" "$logs/demo-$hosts.log" | sed 's/^/  /'
done

# Faults. Each run starts on fresh hosts: rank k-1 runs on host k, so host 3 holds rank 2.
fault() {
    local name=$1 kind=$2 deadline_ms=$3 action=$4 started at status=0 first
    $cluster down
    $cluster up 4
    run "$name" 90 4 target/release/lbm-test-collectives endless "$kind" "$deadline_ms" &
    local job=$!
    for _ in $(seq 300); do
        [ "$(grep -c ": running" "$logs/$name.log" 2>/dev/null)" -eq 4 ] && break
        sleep 0.1
    done
    [ "$(grep -c ": running" "$logs/$name.log")" -eq 4 ] || fail "$name: the job did not start"
    at=$(now_ms)
    case "$action" in
    cut) $cluster cut 3 ;;
    kill)
        for pid in $(ip netns pids "${LBM_CLUSTER}h3"); do
            [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = lbm-test-collec ] && kill -9 "$pid"
        done
        ;;
    esac
    wait "$job" || status=$?
    [ "$status" -ne 0 ] || fail "$name: the job exited 0 after the fault"
    # 90 s is the run's limit: ending that late means the time limit ended it, not the job.
    [ $(($(now_ms) - at)) -lt 85000 ] || { cat "$logs/$name.log" >&2; fail "$name: the job hung"; }
    first=$(grep -o "lightbeam error at [0-9]* ms (code [0-9]*): .*rank 2 (tcp://10.77.0.13:[0-9]*)" "$logs/$name.log" | sort | head -1) ||
        { cat "$logs/$name.log" >&2; fail "$name: no Lightbeam error named rank 2 on host 3"; }
    echo "cluster: $name: first Lightbeam error $(($(echo "$first" | awk '{print $4}') - at)) ms after the fault (deadline $deadline_ms ms), job exit $status"
    echo "  ${first#*): }"
}
fault cut-during-broadcast broadcast 3000 cut
fault cut-during-all-to-all all-to-all 3000 cut
fault kill-during-broadcast broadcast 1000 kill

$cluster down
# The hosts share this kernel's /dev/shm but are separate nodes by host name, so the survivors of a fault,
# on other hosts, do not remove what a killed rank left there; the next mesh bootstrapped here does, as
# on a real node. Run one, and check that no segment of these jobs is left.
timeout 60 env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -n 1 target/release/lbm-test-mesh pairs >/dev/null || fail "the mesh after the faults"
leftover=$(find /dev/shm -maxdepth 1 -name 'lightbeam-mesh-*' -newer "$logs/started" 2>/dev/null || true)
[ -z "$leftover" ] || fail "segments left in /dev/shm: $leftover"
left=$(ip netns list | grep -c "^$LBM_CLUSTER" || true)
[ "$left" -eq 0 ] || fail "$left namespaces left behind"
# Killed processes whose parent is gone may linger as zombies until init reaps them: they run nothing.
running=$(ps -eo stat=,args= | awk '$1 !~ /^Z/' | grep -E "lbm-test-|examples/broadcast|orted" | grep -v grep || true)
[ -z "$running" ] || fail "processes left behind: $running"
echo "cluster: all multi-host tests passed; no namespace, link or process left"
