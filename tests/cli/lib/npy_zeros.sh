# npy_zeros.sh -- sourced by the shell tests that need a .npy file without
# Python: npy_zeros FILE DESCR SHAPE BYTES writes a .npy of BYTES zero
# bytes ('<f4', '<i8', ...; SHAPE as numpy prints it, "(2, 3)") behind a
# 128-byte header.
npy_zeros() {
  hdr="{'descr': '$2', 'fortran_order': False, 'shape': $3, }"
  {
    printf '\223NUMPY\001\000\166\000%s' "$hdr"
    printf '%*s\n' $((118 - ${#hdr} - 1)) ''
    head -c "$4" /dev/zero
  } >"$1"
}
