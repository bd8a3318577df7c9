# Sourced by the scripts/bench-*.sh scripts, with their arguments: [RUNS] [OUTDIR] (default 3,
# docs/bench). Sets runs and out, makes OUTDIR, builds lbm-bench, lets OpenMPI run as root, and defines
# `ratios NAME`, which prints each figure's lightbeam/mpi ratio in every run's OUTDIR/NAME-runN.txt.
runs=${1:-3}
out=${2:-docs/bench}
mkdir -p "$out"
cargo build --release -p lbm-bench >&2
[ "$(id -u)" -ne 0 ] || export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# Each table names its benchmark and rank count in its title and its columns in the line that starts with
# "size"; a row starts with the size, two words ("8 B").
ratios() {
    python3 - "$out" "$runs" "$1" <<'EOF'
import re, sys

out, runs, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
ratios = {}
for run in range(1, runs + 1):
    title = column = None
    for line in open(f"{out}/{name}-run{run}.txt"):
        words = line.split()
        if m := re.match(r"# lbm-bench (\S+): (\d+) ranks", line):
            title, column = f"{m[1]}, {m[2]} ranks", None
        elif words[:1] == ["size"] and "lightbeam/mpi" in words:
            column = words.index("lightbeam/mpi") + 1
        elif title and column and len(words) > column and not line.startswith("#"):
            ratios.setdefault(f"{title}, {words[0]} {words[1]}", []).append(words[column])
print("\nlightbeam/mpi in each run (time: below 1 is Lightbeam faster; bandwidth: above 1 is)")
for figure, values in ratios.items():
    print(f"{figure:<30}" + "".join(f"{v:>8}" for v in values))
EOF
}
