#!/usr/bin/env bash
# A single-node Slurm on this machine for tests: munged, slurmctld and slurmd from Debian's packages, started
# directly (no systemd), configured in a private folder, on free ports. Nothing outside that folder changes.
#
#   slurm/local-cluster.sh up DIR     start; prints `export SLURM_CONF=DIR/slurm.conf` for the client tools
#   slurm/local-cluster.sh down DIR   stop every daemon it started (by PID) and remove DIR
set -euo pipefail

command=${1:?usage: local-cluster.sh up|down DIR}
dir=${2:?usage: local-cluster.sh up|down DIR}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
    local pidfile pid
    for pidfile in "$dir"/slurmd.pid "$dir"/slurmctld.pid "$dir"/munged.pid; do
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
}

case "$command" in
up)
    mkdir -p "$dir"/state "$dir"/spool "$dir"/munge
    chmod 700 "$dir"/munge
    host=$(hostname -s)
    cpus=$(nproc)
    dd if=/dev/urandom of="$dir"/munge/munge.key bs=1024 count=1 status=none
    chmod 600 "$dir"/munge/munge.key
    munged --foreground --force --socket="$dir"/munge/munge.socket --key-file="$dir"/munge/munge.key \
        --pid-file="$dir"/munge/munged.pid --log-file="$dir"/munged.log --seed-file="$dir"/munge/seed \
        >/dev/null 2>&1 &
    echo $! >"$dir"/munged.pid
    cat >"$dir"/slurm.conf <<CONF
ClusterName=lightbeam
SlurmctldHost=$host
SlurmUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
AuthInfo=socket=$dir/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.daemon.pid
SlurmdPidFile=$dir/slurmd.daemon.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=pmix
ReturnToService=2
KillOnBadExit=1
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/jobcomp.txt
NodeName=$host CPUs=$cpus State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=60 State=UP
CONF
    for _ in $(seq 50); do [ -S "$dir"/munge/munge.socket ] && break; sleep 0.1; done
    slurmctld -D -i -f "$dir"/slurm.conf >>"$dir"/slurmctld.log 2>&1 &
    echo $! >"$dir"/slurmctld.pid
    slurmd -D -f "$dir"/slurm.conf >>"$dir"/slurmd.log 2>&1 &
    echo $! >"$dir"/slurmd.pid
    export SLURM_CONF="$dir"/slurm.conf
    for _ in $(seq 300); do
        if sinfo -h -o %t 2>/dev/null | grep -qx idle; then
            echo "export SLURM_CONF=$dir/slurm.conf"
            exit 0
        fi
        sleep 0.1
    done
    echo "local-cluster: Slurm did not come up within 30 s; logs in $dir" >&2
    tail -n 20 "$dir"/slurmctld.log "$dir"/slurmd.log "$dir"/munged.log >&2 || true
    stop
    exit 1
    ;;
down)
    stop
    rm -rf "$dir"
    ;;
*)
    echo "usage: local-cluster.sh up|down DIR" >&2
    exit 2
    ;;
esac
