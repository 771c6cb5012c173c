B	attn_maskJ ÃQZ¿Á¿ø‰"?V¡?JP»J«W¿
²¿ï¾3¿