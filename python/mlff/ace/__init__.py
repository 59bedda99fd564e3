"""ACE potentials (.yace, .ace): the native core is ``mlff.ace._ace``."""
