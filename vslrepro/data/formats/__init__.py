"""Readers (and a few writers) of the file formats every dataset shares: audio (WAV → log-spectrogram),
images (frames and their train/test geometry), boxes (ground-truth maps, size buckets), lists
(metadata lists), ids (clip-id spellings) and media (where a split root keeps frames and sounds).
A dataset's own formats (Flickr-SoundNet's XML, VGG-SS's JSON, ...) live in its module under
`vslrepro.data.datasets`.
"""
