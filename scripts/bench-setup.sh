# Sourced by the scripts/bench-*.sh scripts, with their arguments: [RUNS] [OUTDIR] (default 3,
# docs/bench). Sets runs and out, makes OUTDIR, builds lbm-bench, and lets OpenMPI run as root.
runs=${1:-3}
out=${2:-docs/bench}
mkdir -p "$out"
cargo build --release -p lbm-bench >&2
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
