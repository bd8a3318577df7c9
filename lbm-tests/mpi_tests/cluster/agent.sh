#!/bin/sh
# OpenMPI's launcher agent for the namespace hosts of cluster.sh, in place of ssh: drops ssh-style options,
# maps the host address to its namespace, and runs the command there under that host's own hostname.
while [ $# -gt 0 ]; do
    case "$1" in
    -*) shift ;;
    *) break ;;
    esac
done
host=$1
shift
ns="${LBM_CLUSTER:-lbmc}h$(( ${host##*.} - 10 ))"
exec ip netns exec "$ns" unshare --uts /bin/sh -c "hostname $ns; $*"
