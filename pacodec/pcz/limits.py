"""Caps on sizes, stated in formats/pcz.md section "Limits".

They are checked before anything is allocated, both when reading a file and when
accepting an input video, so a hostile file or stream cannot make pacodec allocate
more than these bounds allow.
"""

MAX_WIDTH = 4096
MAX_HEIGHT = 4096
MAX_PIXELS_PER_FRAME = 4096 * 2304  # about 9.4 M pixels
MAX_FRAMES = 1 << 24  # 16.7 M frames, over 6 days at 30 fps
MAX_CENTROIDS = 65536
MAX_RECORD_BYTES = 64 << 20  # one record's payload
MAX_CODE_ENTRIES = 16 << 20  # entries of one frame's code tensor
MAX_MODEL_ID_BYTES = 64
MAX_MODELS = 4
MAX_CODE_DIMS = 4
MAX_FPS = 1000  # frames per second; a frame rate over this is a damaged header
MAX_HEADER_BODY_BYTES = 4096  # §3: 1.0 needs at most 461; room for minor versions
