# shellcheck shell=sh
# serve_flops.sh -- sourced by serve_table.sh and serve_ceiling.sh: the
# FLOPs of one request of the serving tables (docs/ARCHITECTURE.md counts).

# minilm_flops S: a MiniLM-shaped request of S tokens (tools/make_minilm.py):
# per layer and token 2*(4 D^2 + 2 D F) for the projections and the FFN,
# 4*S*D for attention; the pooler 2 D^2 per sequence
minilm_flops() {
  awk -v S="$1" 'BEGIN { D = 384; F = 1536; L = 6;
    printf "%.0f", L * S * (2 * (4 * D * D + 2 * D * F) + 4 * S * D) + 2 * D * D }'
}

# layer_flops S D: a self-attention layer (`mha gen -d D`) on S tokens: the
# four projections 8 S D^2, the scores and the weighted sum 4 S^2 D
layer_flops() {
  awk -v S="$1" -v D="$2" 'BEGIN { printf "%.0f", 8 * S * D * D + 4 * S * S * D }'
}
