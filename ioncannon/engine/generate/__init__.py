"""Images: class (prior) images and the prompt pack through a batched sampler, collages and the contact sheet."""
