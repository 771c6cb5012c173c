/* entry_external_data.c -- fuzz entry for external-data path resolution.
 *
 * Once per process a folder tree is made under the fuzz temporary folder:
 *
 *   <tmp>/outside/secret.bin        4 KiB of SENTINEL bytes (never loadable)
 *   <tmp>/sibling.bin               SENTINEL bytes too
 *   <tmp>/model/                    the model folder (base_dir)
 *       w.bin  sub/x.bin  sub/deeper/y.bin  empty.bin     data, bytes < 0x80
 *       link_in -> w.bin            sub/link_up -> ../w.bin   (stay inside)
 *       link_out -> ../outside/secret.bin                     (escape)
 *       link_abs -> <tmp>/outside/secret.bin                  (absolute)
 *       dir_out -> ../outside       loop -> loop             (escape, loop)
 *       proc_root -> /proc/self/root                          (magic link)
 *       fifo (a FIFO)               d.bin/ (a folder)
 *
 * Each input describes one external-data initializer of a small model
 * (Identity W -> Y) loaded with ir_load_memory(base_dir = model folder):
 *
 *   byte 0        flags: bits 0-1 dtype (float32, uint8, int64, float16),
 *                 bit 2 leave data_location DEFAULT, bit 3 add raw_data too,
 *                 bit 4 a 2-D shape [d0, 1]
 *   then lines    location \n offset \n length \n d0
 *                 ("-" or a missing line leaves the key out; d0 missing:
 *                 length / element size, or 4)
 *
 * What must hold: a loaded tensor holds exactly the bytes, at the offset, of
 * a regular file inside the model folder (so never a SENTINEL byte); the
 * resolver (onnx_open_beneath, openat2 and fallback walk) only ever returns
 * descriptors of things inside the folder; refusals are clean; no
 * descriptor leaks. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fuzz_entry.h"
#include "onnx_load_internal.h"

#define SENTINEL 0xEE
#define MAX_INSIDE 16

typedef struct inside_entry {
    dev_t dev;
    ino_t ino;
    const uint8_t *content; /* regular files: what was written */
    size_t len;
    int regular;
} inside_entry;

static struct {
    char base[4200];
    int base_fd;
    inside_entry inside[MAX_INSIDE];
    int n_inside;
    dev_t secret_dev;
    ino_t secret_ino;
} tree;

static uint8_t w_bin[256], x_bin[64], y_bin[40];

static void make_pattern(uint8_t *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)((i * 37u + seed * 11u) & 0x7f);
}

static void put_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    FUZZ_CHECK(f != NULL, "cannot create %s", path);
    FUZZ_CHECK(n == 0 || fwrite(data, 1, n, f) == n, "cannot write %s", path);
    FUZZ_CHECK(fclose(f) == 0, "cannot close %s", path);
}

static void remember(const char *rel, const uint8_t *content, size_t len) {
    struct stat st;
    FUZZ_CHECK(fstatat(tree.base_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0, "stat %s", rel);
    FUZZ_CHECK(tree.n_inside < MAX_INSIDE, "too many inside entries");
    inside_entry *e = &tree.inside[tree.n_inside++];
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->content = content;
    e->len = len;
    e->regular = S_ISREG(st.st_mode);
}

static void make_tree(void) {
    char p[4400], q[4400];
    const char *root = fuzz_tmpdir();
    static uint8_t secret[4096];
    memset(secret, SENTINEL, sizeof secret);
    snprintf(p, sizeof p, "%s/outside", root);
    FUZZ_CHECK(mkdir(p, 0755) == 0 || errno == EEXIST, "mkdir %s", p);
    snprintf(p, sizeof p, "%s/outside/secret.bin", root);
    put_file(p, secret, sizeof secret);
    struct stat st;
    FUZZ_CHECK(stat(p, &st) == 0, "stat %s", p);
    tree.secret_dev = st.st_dev;
    tree.secret_ino = st.st_ino;
    snprintf(p, sizeof p, "%s/sibling.bin", root);
    put_file(p, secret, 512);

    snprintf(tree.base, sizeof tree.base, "%s/model", root);
    FUZZ_CHECK(mkdir(tree.base, 0755) == 0 || errno == EEXIST, "mkdir %s", tree.base);
    tree.base_fd = open(tree.base, O_PATH | O_DIRECTORY | O_CLOEXEC);
    FUZZ_CHECK(tree.base_fd >= 0, "open %s", tree.base);
    make_pattern(w_bin, sizeof w_bin, 1);
    make_pattern(x_bin, sizeof x_bin, 2);
    make_pattern(y_bin, sizeof y_bin, 3);

#define AT(rel) (snprintf(p, sizeof p, "%s/%s", tree.base, rel), p)
    put_file(AT("w.bin"), w_bin, sizeof w_bin);
    put_file(AT("empty.bin"), "", 0);
    FUZZ_CHECK(mkdir(AT("sub"), 0755) == 0, "mkdir sub");
    FUZZ_CHECK(mkdir(AT("sub/deeper"), 0755) == 0, "mkdir sub/deeper");
    FUZZ_CHECK(mkdir(AT("d.bin"), 0755) == 0, "mkdir d.bin");
    put_file(AT("sub/x.bin"), x_bin, sizeof x_bin);
    put_file(AT("sub/deeper/y.bin"), y_bin, sizeof y_bin);
    FUZZ_CHECK(mkfifo(AT("fifo"), 0644) == 0, "mkfifo");
    FUZZ_CHECK(symlink("w.bin", AT("link_in")) == 0, "symlink link_in");
    FUZZ_CHECK(symlink("../w.bin", AT("sub/link_up")) == 0, "symlink sub/link_up");
    FUZZ_CHECK(symlink("../outside/secret.bin", AT("link_out")) == 0, "symlink link_out");
    snprintf(q, sizeof q, "%s/outside/secret.bin", root);
    FUZZ_CHECK(symlink(q, AT("link_abs")) == 0, "symlink link_abs");
    FUZZ_CHECK(symlink("../outside", AT("dir_out")) == 0, "symlink dir_out");
    FUZZ_CHECK(symlink("loop", AT("loop")) == 0, "symlink loop");
    FUZZ_CHECK(symlink("/proc/self/root", AT("proc_root")) == 0, "symlink proc_root");
#undef AT

    /* everything a resolver may legitimately hand back */
    remember(".", NULL, 0);
    remember("w.bin", w_bin, sizeof w_bin);
    remember("empty.bin", NULL, 0);
    remember("sub", NULL, 0);
    remember("sub/deeper", NULL, 0);
    remember("d.bin", NULL, 0);
    remember("sub/x.bin", x_bin, sizeof x_bin);
    remember("sub/deeper/y.bin", y_bin, sizeof y_bin);
    remember("fifo", NULL, 0);
}

static const inside_entry *inside_lookup(int fd) {
    struct stat st;
    FUZZ_CHECK(fstat(fd, &st) == 0, "fstat of a resolved descriptor");
    FUZZ_CHECK(!(st.st_dev == tree.secret_dev && st.st_ino == tree.secret_ino),
               "resolver returned the file outside the model folder");
    for (int i = 0; i < tree.n_inside; i++)
        if (tree.inside[i].dev == st.st_dev && tree.inside[i].ino == st.st_ino)
            return &tree.inside[i];
    return NULL;
}

/* One input line into buf ("" when absent); returns the rest. */
static const uint8_t *take_line(const uint8_t *p, const uint8_t *end, char *buf, size_t cap,
                                int *present) {
    size_t n = 0;
    *present = p < end;
    while (p < end && *p != '\n') {
        if (n + 1 < cap) buf[n++] = (char)*p;
        p++;
    }
    buf[n] = '\0';
    if (p < end) p++;
    if (*present && strcmp(buf, "-") == 0) *present = 0;
    return p;
}

/* The resolver's own promise, for both of its strategies. */
static void check_resolver(const char *loc) {
    for (int fallback = 0; fallback <= 1; fallback++) {
        int fd = onnx_open_beneath(tree.base_fd, loc, fallback);
        if (fd < 0) continue;
        const inside_entry *e = inside_lookup(fd);
        FUZZ_CHECK(e != NULL, "resolver (%s) opened '%s' outside the model folder",
                   fallback ? "fallback" : "openat2", loc);
        close(fd);
    }
}

/* W's loaded data against the source bytes it came from: the same bytes, or
 * each float16 of them widened to float32 (compared bit for bit) */
static int w_holds(const tensor *t, int widened, const uint8_t *src) {
    if (!widened) return memcmp(t->data, src, t->nbytes) == 0;
    for (size_t i = 0; i < t->nbytes / 4; i++) {
        uint16_t h;
        memcpy(&h, src + 2 * i, sizeof h);
        const float want = mha_half_to_float(h);
        if (memcmp(&want, (const float *)t->data + i, sizeof want) != 0) return 0;
    }
    return 1;
}

int fuzz_external_data_one(const uint8_t *data, size_t size) {
    if (tree.base[0] == '\0') make_tree();
    if (size == 0) return 0;
    int fd_before = fuzz_lowest_free_fd();

    static const int32_t dtypes[4] = {MHA_DTYPE_FLOAT32, MHA_DTYPE_UINT8, MHA_DTYPE_INT64,
                                      MHA_DTYPE_FLOAT16};
    uint8_t flags = data[0];
    int32_t dtype = dtypes[flags & 3];
    size_t esize = mha_dtype_size((mha_dtype)dtype);
    const uint8_t *p = data + 1, *end = data + size;
    char loc[1024], off[64], len[64], d0s[64];
    int has_loc, has_off, has_len, has_d0;
    p = take_line(p, end, loc, sizeof loc, &has_loc);
    p = take_line(p, end, off, sizeof off, &has_off);
    p = take_line(p, end, len, sizeof len, &has_len);
    p = take_line(p, end, d0s, sizeof d0s, &has_d0);

    int64_t d0 = 4;
    if (has_d0) {
        d0 = strtoll(d0s, NULL, 10);
    } else if (has_len) {
        long long l = strtoll(len, NULL, 10);
        d0 = l > 0 ? l / (long long)esize : 0;
    }

    /* the model: initializer W (external), Identity W -> Y, output Y */
    Onnx__StringStringEntryProto kv[3], *kvp[3];
    size_t n_kv = 0;
    const char *keys[3] = {"location", "offset", "length"};
    char *vals[3] = {loc, off, len};
    int has[3] = {has_loc, has_off, has_len};
    for (int k = 0; k < 3; k++) {
        if (!has[k]) continue;
        onnx__string_string_entry_proto__init(&kv[n_kv]);
        kv[n_kv].key = (char *)keys[k];
        kv[n_kv].value = vals[k];
        kvp[n_kv] = &kv[n_kv];
        n_kv++;
    }
    Onnx__TensorProto w;
    onnx__tensor_proto__init(&w);
    int64_t dims[2] = {d0, 1};
    w.n_dims = flags & 16 ? 2 : 1;
    w.dims = dims;
    w.has_data_type = 1;
    w.data_type = dtype;
    w.name = "W";
    w.n_external_data = n_kv;
    w.external_data = kvp;
    if (!(flags & 4)) {
        w.has_data_location = 1;
        w.data_location = ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL;
    }
    uint8_t raw[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    if (flags & 8) {
        w.has_raw_data = 1;
        w.raw_data.data = raw;
        w.raw_data.len = sizeof raw;
    }
    Onnx__TensorProto *inits[1] = {&w};
    char *node_in[1] = {"W"}, *node_out[1] = {"Y"};
    Onnx__NodeProto node;
    onnx__node_proto__init(&node);
    node.op_type = "Identity";
    node.name = "id";
    node.n_input = 1;
    node.input = node_in;
    node.n_output = 1;
    node.output = node_out;
    Onnx__NodeProto *nodes[1] = {&node};
    Onnx__ValueInfoProto y;
    onnx__value_info_proto__init(&y);
    y.name = "Y";
    Onnx__ValueInfoProto *outs[1] = {&y};
    Onnx__GraphProto graph;
    onnx__graph_proto__init(&graph);
    graph.name = "external_data";
    graph.n_node = 1;
    graph.node = nodes;
    graph.n_initializer = 1;
    graph.initializer = inits;
    graph.n_output = 1;
    graph.output = outs;
    Onnx__OperatorSetIdProto opset;
    onnx__operator_set_id_proto__init(&opset);
    opset.domain = "";
    opset.has_version = 1;
    opset.version = 17;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__ModelProto model;
    onnx__model_proto__init(&model);
    model.has_ir_version = 1;
    model.ir_version = 8;
    model.n_opset_import = 1;
    model.opset_import = opsets;
    model.graph = &graph;

    size_t bytes = onnx__model_proto__get_packed_size(&model);
    uint8_t *buf = malloc(bytes);
    FUZZ_CHECK(buf != NULL, "malloc");
    FUZZ_CHECK(onnx__model_proto__pack(&model, buf) == bytes, "pack");

    mha_alloc_ctx a;
    mha_alloc_ctx_init(&a, NULL);
    ir_graph *g = NULL;
    mha_error err;
    mha_error_clear(&err);
    mha_status st = ir_load_memory(&a, buf, bytes, tree.base, NULL, &g, &err);
    free(buf);
    fuzz_note("ir_load_memory", st, &err);
    if (st != MHA_OK) {
        fuzz_check_error("ir_load_memory", st, &err);
    } else {
        const tensor *t = NULL;
        for (size_t v = 0; v < g->n_values; v++)
            if (strcmp(g->values[v].name, "W") == 0) t = g->values[v].init;
        FUZZ_CHECK(t != NULL, "initializer W missing after a successful load");
        /* a float16 W is a whole float16 model's weight: widened to float32
         * at load (onnx_load_half.c), from half as many source bytes */
        const int widened = dtype == MHA_DTYPE_FLOAT16 && t->dtype == MHA_DTYPE_FLOAT32;
        const size_t src_bytes = widened ? t->nbytes / 2 : t->nbytes;
        if (!widened)
            for (size_t i = 0; i < t->nbytes; i++)
                FUZZ_CHECK(((const uint8_t *)t->data)[i] != SENTINEL,
                           "byte %zu of W came from outside the model folder", i);
        /* not marked EXTERNAL: only the inline raw_data may have been used */
        if (flags & 4)
            FUZZ_CHECK(t->nbytes == 0 || (src_bytes == sizeof raw && w_holds(t, widened, raw)),
                       "W is not EXTERNAL yet holds %zu bytes that are not its raw_data",
                       t->nbytes);
        /* the bytes are those of the file the resolver names, at the offset */
        else if (t->nbytes > 0) {
            FUZZ_CHECK(has_loc, "W loaded without a location");
            int fd = onnx_open_beneath(tree.base_fd, loc, 0);
            FUZZ_CHECK(fd >= 0, "W loaded from '%s', which does not resolve", loc);
            const inside_entry *e = inside_lookup(fd);
            close(fd);
            FUZZ_CHECK(e && e->regular, "W loaded from '%s', not a known inside file", loc);
            unsigned long long o = has_off ? strtoull(off, NULL, 10) : 0;
            FUZZ_CHECK(o <= e->len && src_bytes <= e->len - o,
                       "W: %zu bytes at offset %llu of a %zu-byte file", src_bytes, o, e->len);
            FUZZ_CHECK(w_holds(t, widened, e->content + o),
                       "W does not hold the bytes of '%s' at offset %llu", loc, o);
        }
        ir_free(g);
    }
    if (has_loc) check_resolver(loc);
    FUZZ_CHECK(fuzz_lowest_free_fd() == fd_before, "descriptor leak");
    return 0;
}
