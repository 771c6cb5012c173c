B
logits_clsJ¯Ñï¾ Î¾üKv>Ayø¾…óÊ¾²†>