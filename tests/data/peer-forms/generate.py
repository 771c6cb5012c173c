#!/usr/bin/python3
"""Regenerate the peer-forms test models (run from the project root):

    /usr/bin/python3 tests/data/peer-forms/generate.py ../shared/peer

Each <form>_d32_h4[_causal]/ holds model.onnx written by the peer's
gen_mha.py (seed 0) and test_data_set_0/{input_0,output_0}.pb: a seeded
input x [2, 5, 32] and the float64 numpy reference of ref_mha.py, cast to
float32. Needs Debian's python3-onnx and python3-numpy.
"""
import os
import subprocess
import sys

import numpy as np
import onnx
from onnx import numpy_helper

peer = sys.argv[1] if len(sys.argv) > 1 else "../shared/peer"
here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, peer)
import ref_mha  # noqa: E402  (the peer's independent numpy reference)

for form in ("attention23", "ms_mha", "decomposed"):
    for causal in (False, True):
        name = f"{form}_d32_h4" + ("_causal" if causal else "")
        out = os.path.join(here, name)
        os.makedirs(os.path.join(out, "test_data_set_0"), exist_ok=True)
        model_path = os.path.join(out, "model.onnx")
        subprocess.run([sys.executable, os.path.join(peer, "gen_mha.py"), "--d-model", "32",
                        "--heads", "4", "--form", form,
                        "--causal" if causal else "--no-causal", model_path],
                       check=True, stdout=subprocess.DEVNULL)
        x = np.random.default_rng(1).standard_normal((2, 5, 32), dtype=np.float32)
        y, _ = ref_mha.reference(onnx.load(model_path), x)
        for fname, arr, tname in (("input_0.pb", x, "x"), ("output_0.pb", y.astype(np.float32), "y")):
            with open(os.path.join(out, "test_data_set_0", fname), "wb") as f:
                f.write(numpy_helper.from_array(arr, tname).SerializeToString())
        print("wrote", name)
