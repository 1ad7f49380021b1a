'use strict';
// A syntax error on line 3: kuai and node exit 1 naming this file and line.
const broken = ;
