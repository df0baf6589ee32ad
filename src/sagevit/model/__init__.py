"""The model wing: the ViT's layers and builder, pretrained weights and how to read them."""
