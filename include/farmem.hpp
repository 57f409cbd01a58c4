/**
 * @file farmem.hpp
 * @brief Header-only C++17 interface to farmem over the C ABI of `farmem.h`.
 *
 * One header per subsystem, each usable alone (each includes what it needs):
 *
 *   farmem/core.hpp       farmem::Error and check(), Config, Runtime, Task, spawn(), yield(),
 *                         sleep_for(), Metrics; the design note of the whole C++ layer
 *   farmem/objects.hpp    DerefScope and the far-memory containers Array, Vector, List, Stack,
 *                         Queue, HashMap
 *   farmem/dataframe.hpp  DataFrame, generate_taxi_csv() and farmem::taxi's nine steps
 *
 * This umbrella includes all three (and `farmem.h`).
 */
#ifndef FARMEM_HPP
#define FARMEM_HPP

#include "farmem.h"
#include "farmem/core.hpp"
#include "farmem/dataframe.hpp"
#include "farmem/objects.hpp"

#endif  // FARMEM_HPP
