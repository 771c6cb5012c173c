# model_common.sh -- sourced by model_table.sh and rss_table.sh (which
# define die): what both need before timing or measuring the four whole
# models -- the mha binary, the peer's ONNX Runtime bench and the tools, the
# models built in a folder, the shape each is run at.

# model_common_option NAME VALUE: the options both scripts take (--mha,
# --peer, --models, --dir, --out) set mha, peer, models, dir, out; status 1
# for any other.
model_common_option() {
    case "$1" in
    --mha) mha=$2 ;;
    --peer) peer=$2 ;;
    --models) models=$2 ;;
    --dir) dir=$2 ;;
    --out) out=$2 ;;
    *) return 1 ;;
    esac
}

# model_common_setup HERE MHA PEER DIR MODELS: checks the tools, builds the
# missing models into DIR; sets mha (found beside HERE when MHA is empty)
# and py.
model_common_setup() {
    mha=$2
    if [ -z "$mha" ]; then
        if [ -x "$1/../build/bin/mha" ]; then mha="$1/../build/bin/mha"; else mha=$(command -v mha || true); fi
    fi
    [ -n "$mha" ] && [ -x "$mha" ] || die "cannot find the mha binary (build it, or pass --mha PATH)"
    [ -f "$3/ort_model_bench.js" ] || die "no ort_model_bench.js in $3 (pass --peer DIR)"
    command -v node >/dev/null 2>&1 || die "node is needed"
    [ -x /usr/bin/time ] || die "/usr/bin/time is needed (apt-get install time)"
    py=/usr/bin/python3
    mkdir -p "$4"
    "$py" "$1/model_table_models.py" "$4" $(echo "$5" | tr ',' ' ') >&2 ||
        die "building the models failed"
}

shape_of() { # name -> "B S"
    case "$1" in
    bert_base) echo "8 128" ;;
    minilm_l6) echo "32 128" ;;
    gpt2_small) echo "4 256" ;;
    vit_b16) echo "8 197" ;;
    *) die "unknown model $1" ;;
    esac
}
