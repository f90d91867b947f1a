#!/usr/bin/env bash
# The first hour with popnet, offline and in minutes on a CPU: train a population, look at its learning curves,
# open the zoo in Python, and ask a meta-model what the weights tell. Run from anywhere:
#   bash examples/first_hour.sh [WORKDIR] [POPULATION]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
work=${1:-runs/first_hour}
population=${2:-64}

python -m popnet.data prepare digits                       # offline: scikit-learn's 8x8 digits
python -m popnet.train --config smoke --workdir "$work" --noprogress \
  --config.population="$population" --config.epochs=4 --config.snapshots=5
python -m popnet.curves plot "$work" --out "$work/curves.png"
python "$here/zoo_tour.py" "$work"
python -m meta.train --zoo "$work" --target activation --model statnn_gbt --snapshots 1-4 \
  --out "$work/meta/activation"
