if foo bar { keep; }
