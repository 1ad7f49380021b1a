'use strict';
// Requires a module that does not exist: exit 1 with "Cannot find module".
require('kuai-test-no-such-module');
