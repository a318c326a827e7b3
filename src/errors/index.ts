export { AppError, appError, ERROR_CATALOGUE, type ErrorCode } from './catalogue.js';
