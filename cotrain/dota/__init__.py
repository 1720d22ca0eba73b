"""DOTA: the detection data model (``types``: Det, GT, class tables), its file formats
(``formats``: labelTxt, Task1 result files, mmrotate result pickles) and patch splitting of large
images with the merge back (``split``). Converters and ``detection/`` both build on it.
"""
