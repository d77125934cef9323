include "x";
