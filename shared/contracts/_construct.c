/* A pydantic model built from trusted fields in C: what `unvalidated.unvalidated` does in Python.
 *
 * `unvalidated` makes a model without validation by `cls.__new__(cls)` and four
 * `object.__setattr__` calls (the instance dict and pydantic's three slots), each a call
 * through Python: about 8,300 instructions an event compiled, seven events a proxied call
 * (callgrind, `bench.proxy.core_calls`).  This module does the same four stores as
 * `object.__setattr__` does them (`PyObject_GenericSetDict` and `PyObject_GenericSetAttr`, which
 * skip `BaseModel.__setattr__` alike) without a Python call between them.
 *
 * `construct(cls, fields)`: `cls` a type whose `__new__` is `object.__new__` (a pydantic
 * `BaseModel` subclass), `fields` an exact dict holding every field by name; the new model
 * takes the dict itself as its `__dict__`, the set of its class's fields as
 * `__pydantic_fields_set__`, and None as `__pydantic_extra__` and `__pydantic_private__`.  A
 * wrong argument is a TypeError (a type whose instances have no `__dict__`, an AttributeError,
 * as in `_construct`).
 *
 * The fields set is one per class, made once from the class's declared fields
 * (`__pydantic_fields__`) and shared by every model built of it with as many fields as it
 * declares: a new set of the dict's keys per model cost some 13,000 instructions a proxied
 * call (building, freeing, and the collector walking the sets of events waiting for their
 * batch; `docs/benchmarks.md`).  Shared safely: the models built so are frozen (nothing
 * adds to the set), and pydantic copies a model's set before changing it (`model_copy`).  A
 * model given fewer or more fields than its class declares, or of a class that is no
 * pydantic model, gets a set of its own.  Only the number of fields is compared: `fields`
 * holding every field is what `unvalidated` asks of its callers, as pydantic's
 * `model_construct` trusts its `_fields_set`.
 *
 * Built with the compiled fast path (`deploy/extensions.py`); CALLMESH_NO_EXTENSIONS=1 (or no
 * build) leaves it out and `unvalidated.py` does the same in Python.  The tests build every
 * call event both ways and compare them (`tests/shared/contracts/test_unvalidated.py`).
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *fields_set_name, *extra_name, *private_name, *declared_name, *no_arguments;
static PyObject *fields_sets; /* exact type -> the set of its declared fields (see above) */

/* A new reference to the fields set of a model of `cls` built from `fields`: the class's
 * shared one when `fields` has as many as it declares, else a set of the dict's keys. */
static PyObject *fields_set_of(PyObject *cls, PyObject *fields) {
    PyObject *shared = PyDict_GetItemWithError(fields_sets, cls); /* borrowed */
    if (shared == NULL) {
        if (PyErr_Occurred()) return NULL;
        PyObject *declared = PyObject_GetAttr(cls, declared_name);
        if (declared == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL; /* as getattr */
            PyErr_Clear();
            return PySet_New(fields); /* no pydantic class: a set of its own */
        }
        if (!PyDict_Check(declared)) {
            Py_DECREF(declared);
            return PySet_New(fields);
        }
        shared = PySet_New(declared);
        Py_DECREF(declared);
        if (shared == NULL) return NULL;
        int stored = PyDict_SetItem(fields_sets, cls, shared);
        Py_DECREF(shared); /* the cache holds it */
        if (stored < 0) return NULL;
    }
    if (PySet_GET_SIZE(shared) != PyDict_GET_SIZE(fields)) return PySet_New(fields);
    Py_INCREF(shared);
    return shared;
}

static PyObject *construct(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "construct(cls, fields) takes two arguments");
        return NULL;
    }
    PyObject *cls = args[0], *fields = args[1];
    if (!PyType_Check(cls) || ((PyTypeObject *)cls)->tp_new != PyBaseObject_Type.tp_new) {
        PyErr_SetString(PyExc_TypeError, "construct: cls must be a type made by object.__new__");
        return NULL;
    }
    if (!PyDict_CheckExact(fields)) {
        PyErr_SetString(PyExc_TypeError, "construct: fields must be a dict");
        return NULL;
    }
    PyObject *model = PyBaseObject_Type.tp_new((PyTypeObject *)cls, no_arguments, NULL);
    if (model == NULL) return NULL;
    PyObject *fields_set = fields_set_of(cls, fields);
    if (fields_set == NULL || PyObject_GenericSetDict(model, fields, NULL) < 0 ||
        PyObject_GenericSetAttr(model, fields_set_name, fields_set) < 0 ||
        PyObject_GenericSetAttr(model, extra_name, Py_None) < 0 ||
        PyObject_GenericSetAttr(model, private_name, Py_None) < 0) {
        Py_XDECREF(fields_set);
        Py_DECREF(model);
        return NULL;
    }
    Py_DECREF(fields_set);
    return model;
}

static PyMethodDef methods[] = {
    {"construct", (PyCFunction)(void (*)(void))construct, METH_FASTCALL,
     "A model of cls whose fields are the dict fields, unvalidated (see _construct.c)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "shared.contracts._construct",
    "A pydantic model built from trusted fields in C (see _construct.c).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__construct(void) {
    if (no_arguments == NULL) { /* once: a second load (the tests' loader) keeps the first ones */
        fields_set_name = PyUnicode_InternFromString("__pydantic_fields_set__");
        extra_name = PyUnicode_InternFromString("__pydantic_extra__");
        private_name = PyUnicode_InternFromString("__pydantic_private__");
        declared_name = PyUnicode_InternFromString("__pydantic_fields__");
        fields_sets = PyDict_New();
        if (fields_set_name == NULL || extra_name == NULL || private_name == NULL ||
            declared_name == NULL || fields_sets == NULL) {
            Py_CLEAR(fields_set_name);
            Py_CLEAR(extra_name);
            Py_CLEAR(private_name);
            Py_CLEAR(declared_name);
            Py_CLEAR(fields_sets);
            return NULL;
        }
        no_arguments = PyTuple_New(0);
        if (no_arguments == NULL) return NULL;
    }
    return PyModule_Create(&module_def);
}
