"""tfds builders for scribble datasets (importing this registers them).

  scribble_folder      a user's folder: images/, scribbles/, masks/, classes.txt
  scribble_voc         PASCAL VOC 2012 + ScribbleSup ('full21', 'subset6')
  scribble_cityscapes  Cityscapes leftImg8bit + gtFine, the paper's 9 classes
  synthetic_scenes     generated shapes: the demo's data
"""
from cfcls.data.builders.common import BadInputError
from cfcls.data.builders.scribble_cityscapes import ScribbleCityscapes
from cfcls.data.builders.scribble_folder import ScribbleFolder
from cfcls.data.builders.scribble_voc import ScribbleVoc
from cfcls.data.builders.synthetic_scenes import SyntheticScenes
