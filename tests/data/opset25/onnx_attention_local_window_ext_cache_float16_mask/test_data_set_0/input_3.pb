
B	attn_maskJ,4:Å²Ù¸s±Ì:ª³Á¹