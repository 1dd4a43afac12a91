#!/usr/bin/env bash
# Rebuild the shipped demo model (data/demo) from nothing: demo songs, the VQ-VAE, three priors,
# then a float16 copy. About an hour and three quarters on a 2-core CPU. The priors depend only
# on the VQ-VAE: the top prior and then the level-1 upsampler train on one core (about 70 min)
# while the level-0 upsampler trains on the other (about 47 min); small models run faster as
# one-thread jobs side by side than as one two-thread job.
set -euo pipefail
cd "$(dirname "$0")/../.."

jukelite data synth --out runs/demo_songs --songs 200 --seconds 12 --sample-rate 16000 --seed 0
jukelite train recipes/demo/vqvae.yaml
export OMP_NUM_THREADS=1
(jukelite train recipes/demo/prior_top.yaml && jukelite train recipes/demo/prior_mid.yaml) &
top_and_mid=$!
jukelite train recipes/demo/prior_bottom.yaml & bottom=$!
wait "$top_and_mid"
wait "$bottom"
rm -rf data/demo
jukelite pack models/demo data/demo --dtype float16 \
    --note "songs=jukelite data synth --out runs/demo_songs --songs 200 --seconds 12 --sample-rate 16000 --seed 0" \
    --note "built_by=recipes/demo/build.sh"
