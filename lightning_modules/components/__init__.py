"""Plain ``nn.Module``s and pure functions shared by the methods. Nothing here imports Lightning."""
