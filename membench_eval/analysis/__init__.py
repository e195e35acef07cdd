"""Why does this prompt copy? Word-level trigger attribution and caption duplication statistics
(``attribution``, ``minimal``, ``duplication``, ``probe``; words as ``words`` splits them)."""
