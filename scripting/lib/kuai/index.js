'use strict';

// require('kuai'): the built-in, dependency-free Koa-style framework.
//
//   const { App, Router, createError, HttpError } = require('kuai');
//
// App follows Koa 3's Application, Router follows @koa/router 13; see
// README.md in this folder for the API surface and known differences.

const { App, compose } = require('./application');
const { Router, Layer } = require('./router');
const { createError, HttpError, isHttpError } = require('./errors');
const { Cookies, Keys } = require('./cookies');

module.exports = {
  App,
  Router,
  Layer,
  HttpError,
  createError,
  isHttpError,
  compose,
  Cookies,
  Keys,
};
