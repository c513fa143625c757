"""Label-map conventions shared by the data, the losses and the metrics.

A scribble map is an integer map the size of its image holding the class id
of each labelled pixel (0 = background, 1..K-1 the foreground classes) and
IGNORE for unlabelled pixels; a ground-truth mask uses the same ids with
IGNORE for void pixels. Foreground class c is channel c - 1 of the alpha
mattes and of the multi-label logits (docs/method.md, section 5).
"""

IGNORE = 255
# What a training crop's label map is made from (config.data.annotation):
# the scribbles, or a few dots sampled on them.
ANNOTATIONS = ('scribbles', 'dots')
