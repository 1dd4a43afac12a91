#!/usr/bin/env bash
# Rebuild the demo model (data/demo) from nothing: demo songs, the VQ-VAE, the top prior and the
# two parallel upsamplers, then a float16 copy that records its sampling defaults. About 70
# minutes on a free 2-core CPU. The priors depend only on the VQ-VAE: the top prior trains
# on one core while the two upsamplers train one after the other on the other; small models run
# faster as one-thread jobs side by side than as one two-thread job.
# (recipes/demo/prior_mid.yaml and prior_bottom.yaml are the autoregressive upsamplers the demo
# shipped before; train them instead of the *_parallel ones to compare.)
set -euo pipefail
cd "$(dirname "$0")/../.."

jukelite data synth --out runs/demo_songs --songs 200 --seconds 12 --sample-rate 16000 --seed 0
jukelite train recipes/demo/vqvae.yaml
export OMP_NUM_THREADS=1
jukelite train recipes/demo/prior_top.yaml & top=$!
(jukelite train recipes/demo/prior_mid_parallel.yaml &&
    jukelite train recipes/demo/prior_bottom_parallel.yaml) & upsamplers=$!
wait "$top"
wait "$upsamplers"
rm -rf data/demo
jukelite pack models/demo data/demo --dtype float16 --steps 0=12,1=12 --guidance 0=2,1=2 \
    --note "songs=jukelite data synth --out runs/demo_songs --songs 200 --seconds 12 --sample-rate 16000 --seed 0" \
    --note "built_by=recipes/demo/build.sh"
