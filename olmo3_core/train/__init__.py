"""Base-model training (pretrain, midtrain, long-context): data loading, the DeepSpeed loop, the stage."""
