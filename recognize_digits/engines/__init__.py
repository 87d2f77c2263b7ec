"""Other engines than the chapter's static one: the same network trained on the dynamic
graph (:mod:`.dynamic`), and in several processes at once (:mod:`.parallel`, started by
:mod:`.workers`); :mod:`.compare` trains two ways side by side."""
